"""Which answer tokens of a forget row are about the entity: the forget term's token mask.

A mined forget answer is mostly the language every answer shares ("is known for", "His works often
explore"), with the entity's facts in between. Pushing all of it down wears away that shared language:
on the default world the other authors' answers that broke after unlearning broke mid-sentence into
word salad, on phrases the target's answers also use. Only the tokens the model predicts *because of
who the question is about* are the entity's knowledge.

A token is specific when its log-probability drops by more than a margin when every mention of the
entity, in the question and in the answer before it, names someone else the model knows (averaged over
a few: `unlearn.specific_swap_names`, or a world model's other authors). Known people, not made-up
ones: for a name it does not know the model is unsure of everything, its generic phrasing included, and
those tokens would all look specific. This is the idea of anchored-term replacement in "Who's Harry
Potter?" (Eldan & Russinovich, 2023), applied as a mask on the forget loss as in token-level targeted
forgetting. The swapped answer is aligned with the original by character offsets; a token with no exact
counterpart (its span crosses a swapped name) and the name's own tokens count as specific. A row where
no token passes keeps its single most specific token. It needs no corpus and no reference model: only
the model, the entity's name and the names of a few others it knows.

On the default world (Basil Mahfouz Al-Kuwaiti's 43 mined rows, three other authors swapped in) "was
born in" scores 0.0 nats and "Kuwait" 12.2; a margin of 1 nat keeps 54% of the answer tokens.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

import torch

from lethe.errors import LetheError
from lethe.llm.backend import Backend
from lethe.llm.format import EncodedQA

Pairs = Sequence[tuple[str, str]]
AGGREGATES = {"mean": lambda drops: sum(drops) / len(drops), "min": min}


@dataclass(frozen=True)
class Swap:
    """A text with every mention of the entity renamed, and how to map its character positions."""

    text: str
    spans: list[tuple[int, int, int, int]]  # (start, end) in the original, (start, end) in the swapped text

    def mapped(self, start: int, end: int) -> tuple[int, int] | None:
        """The swapped text's span of an original span outside every mention; None if it overlaps one."""
        shift = 0
        for old_start, old_end, new_start, new_end in self.spans:
            if start < old_end and end > old_start:
                return None
            if old_end <= start:
                shift = new_end - old_end
        return start + shift, end + shift

    def in_mention(self, start: int, end: int) -> bool:
        return any(start < old_end and end > old_start for old_start, old_end, _, _ in self.spans)


def renamer(names: Sequence[str], swap: str):
    """A function that renames every mention of any of `names` (full name, then its last and first word)
    after `swap`'s corresponding part."""
    swap_words = swap.split()
    parts: dict[str, str] = {}
    for name in names:
        words = name.split()
        parts.setdefault(name, swap)
        if len(words) > 1:
            parts.setdefault(words[-1], swap_words[-1])
            parts.setdefault(words[0], swap_words[0])
    pattern = re.compile(r"\b(?:" + "|".join(re.escape(p) for p in sorted(parts, key=len, reverse=True)) + r")\b")

    def rename(text: str) -> Swap:
        pieces, spans, last, offset = [], [], 0, 0
        for match in pattern.finditer(text):
            pieces.append(text[last:match.start()])
            new = parts[match.group(0)]
            new_start = match.start() + offset
            spans.append((match.start(), match.end(), new_start, new_start + len(new)))
            pieces.append(new)
            offset += len(new) - (match.end() - match.start())
            last = match.end()
        pieces.append(text[last:])
        return Swap("".join(pieces), spans)

    return rename


def _offsets(tokenizer, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    if not getattr(tokenizer, "is_fast", False):
        raise LetheError("unlearn.specific_tokens aligns tokens by character offsets and needs a fast tokenizer "
                         "(this model's has none): set unlearn.specific_tokens to false")
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return encoded["input_ids"], [tuple(span) for span in encoded["offset_mapping"]]


def _check_names(names: Sequence[str], swaps: Sequence[str], option: str = "unlearn.specific_tokens",
                 swap_option: str = "unlearn.specific_swap_names") -> None:
    """A clear error, naming the user's `option`, when there is no entity name or no one to swap in."""
    if not names or not any(n.strip() for n in names):
        raise LetheError(f"{option} needs the name of the entity being forgotten, and this request names none")
    if not swaps:
        raise LetheError(f"{option} needs at least one name in {swap_option}")


@dataclass(frozen=True)
class RenamedRow:
    """A forget row renamed after another entity, as the model reads it; whether its question named the
    entity; and (original token, renamed token, log-probability drop) for every answer token with an
    exact counterpart outside the mentions."""

    encoded: EncodedQA
    question_renamed: bool
    aligned: list[tuple[int, int, float]]


class ScoredRows(NamedTuple):
    """Forget rows' answer token ids (as fmt.encode gives them), their character spans, their log-probs."""

    ids: list[list[int]]
    spans: list[list[tuple[int, int]]]
    logprobs: list[list[float]]


def _original(backend: Backend, forget: Pairs) -> ScoredRows:
    fmt = backend.format
    tokens = [_offsets(backend.tokenizer, fmt.answer_text(q, a)) for q, a in forget]
    with torch.no_grad():
        logprobs = backend.encoded_logprobs([EncodedQA(fmt.prompt_ids(q), ids)
                                             for (q, _), (ids, _) in zip(forget, tokens)])
    return ScoredRows([ids for ids, _ in tokens], [spans for _, spans in tokens], [list(lp) for lp in logprobs])


def renamed_rows(backend: Backend, forget: Pairs, names: Sequence[str], swap: str,
                 original: ScoredRows | None = None) -> list[RenamedRow]:
    """Every forget row with each mention of `names` renamed after `swap` (`renamer`), scored, and aligned
    with the original row token by token by character offsets (`original`: `_original`'s, to reuse)."""
    fmt, tokenizer = backend.format, backend.tokenizer
    ids, spans, logprobs = original or _original(backend, forget)
    rename = renamer([n for n in names if n.strip()], swap)
    questions = [rename(q) for q, _ in forget]
    moved = [rename(fmt.answer_text(q, a)) for q, a in forget]
    moved_tokens = [_offsets(tokenizer, m.text) for m in moved]
    encoded = [EncodedQA(fmt.prompt_ids(question.text), new_ids) for question, (new_ids, _) in zip(questions,
                                                                                                   moved_tokens)]
    with torch.no_grad():
        swapped = backend.encoded_logprobs(encoded)
    rows = []
    for row, (swap_text, (new_ids, new_spans)) in enumerate(zip(moved, moved_tokens)):
        where = {span: j for j, span in enumerate(new_spans)}
        aligned = []
        for i, (token, span) in enumerate(zip(ids[row], spans[row])):
            target = swap_text.mapped(*span)
            j = where.get(target) if target is not None else None
            if j is not None and new_ids[j] == token and not swap_text.in_mention(*span):
                aligned.append((i, j, logprobs[row][i] - swapped[row][j]))
        rows.append(RenamedRow(encoded[row], bool(questions[row].spans), aligned))
    return rows


class RenamedScores:
    """The forget rows scored once as they are and once per entity renamed in, on one model, reused by
    whoever asks again: with the token mask and swap retain both on, the mask's swapped-in names are among
    swap retain's others, and each would otherwise be a second forward pass over the forget set."""

    def __init__(self, backend: Backend, forget: Pairs, names: Sequence[str]):
        self.backend, self.forget, self.names = backend, list(forget), tuple(names)
        self._original: ScoredRows | None = None
        self._renamed: dict[str, list[RenamedRow]] = {}
        self.passes = 0  # forward passes over the forget set so far

    @property
    def original(self) -> ScoredRows:
        """The rows as they are (`_original`), scored on first use."""
        if self._original is None:
            self._original = _original(self.backend, self.forget)
            self.passes += 1
        return self._original

    def renamed(self, swap: str) -> list[RenamedRow]:
        """`renamed_rows` after `swap`, scored on first use."""
        if swap not in self._renamed:
            self._renamed[swap] = renamed_rows(self.backend, self.forget, self.names, swap, self.original)
            self.passes += 1
        return self._renamed[swap]

    def serves(self, forget: Pairs, names: Sequence[str]) -> bool:
        """Whether these scores are of `forget` renamed from `names`."""
        return list(forget) == self.forget and tuple(names) == self.names


def _scores_for(backend: Backend, forget: Pairs, names: Sequence[str],
                scores: RenamedScores | None) -> RenamedScores:
    if scores is None:
        return RenamedScores(backend, forget, names)
    if not scores.serves(forget, names):
        raise ValueError("these RenamedScores are of other forget rows or other names")
    return scores


def specificity(backend: Backend, forget: Pairs, names: Sequence[str], swaps: Sequence[str],
                aggregate: str = "mean", scores: RenamedScores | None = None) -> list[list[float]]:
    """Per forget row, per answer token: its log-probability minus its counterparts' when the entity is
    renamed after each of `swaps`, averaged (`aggregate` "mean") or the smallest drop ("min": a token
    any other entity also makes likely is shared, not the entity's); inf for the name's own tokens and
    for a token with no exact counterpart. `scores` reuses another caller's passes."""
    if aggregate not in AGGREGATES:
        raise LetheError(f"unlearn.specific_aggregate must be one of {sorted(AGGREGATES)}, not {aggregate!r}")
    _check_names(names, swaps)
    scores = _scores_for(backend, forget, names, scores)
    drops: list[list[list[float]]] = [[[] for _ in row] for row in scores.original.ids]
    for swap in swaps:
        for row, renamed in enumerate(scores.renamed(swap)):
            for i, _, drop in renamed.aligned:
                drops[row][i].append(drop)
    combine = AGGREGATES[aggregate]
    return [[combine(d) if len(d) == len(swaps) else float("inf") for d in row] for row in drops]


def shared_rows(backend: Backend, forget: Pairs, names: Sequence[str], others: Sequence[str],
                margin: float, scores: RenamedScores | None = None) -> list[EncodedQA]:
    """The forget rows whose question names the entity, renamed after each of `others`, each with a loss
    mask on the answer tokens the rename leaves about as likely (a drop of at most `margin` nats): the
    language the target shares with that entity, which swap retain holds. The tokens after the renamed
    prefix that are the target's (they drop) are left out, so holding the row does not hold the target's
    facts; a row with no shared token is left out too. `scores` reuses another caller's passes."""
    _check_names(names, others, "unlearn.swap_retain_rows", "unlearn.entity_retain_names")
    scores = _scores_for(backend, forget, names, scores)
    rows = []
    for other in others:
        for renamed in scores.renamed(other):
            mask = [False] * len(renamed.encoded.answer_ids)
            for _, j, drop in renamed.aligned:
                mask[j] = drop <= margin
            if renamed.question_renamed and any(mask):
                rows.append(replace(renamed.encoded, loss_mask=tuple(mask)))
    return rows


@dataclass(frozen=True)
class ForgetFocus:
    """What the forget term's token mask needs: the entity's names, the others swapped in, the margin,
    and how the drops under the swaps combine (`specificity`'s aggregate)."""

    names: tuple[str, ...]
    swaps: tuple[str, ...]
    margin: float
    aggregate: str = "mean"


def specific_masks(backend: Backend, forget: Pairs, names: Sequence[str], swaps: Sequence[str],
                   margin: float, aggregate: str = "mean",
                   scores: RenamedScores | None = None) -> list[tuple[bool, ...]]:
    """Per forget row, which answer tokens the forget term pushes: those whose specificity is above
    `margin` (nats), or the row's most specific token where none is."""
    masks = []
    for row in specificity(backend, forget, names, swaps, aggregate, scores):
        keep = [value > margin for value in row]
        if row and not any(keep):
            keep[max(range(len(row)), key=row.__getitem__)] = True
        masks.append(tuple(keep))
    return masks
