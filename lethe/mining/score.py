"""Memorization strength s(v) = (1/N) * #responses mentioning v, with surface variants folded.

One memory is one node: keys are normalized (lethe.mining.extract.normalize) and a short entity
that is the trailing part of exactly one longer entity ("Al-Kuwaiti" of "Basil Mahfouz
Al-Kuwaiti") is folded into it. Mentions of the anchor itself are not nodes.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from lethe.mining.extract import CONNECTORS, STOP_CAPS, Mention, extract, normalize


@dataclass(frozen=True)
class Response:
    """One sampled answer of the target model, with where it came from."""

    id: str
    prompt: str
    text: str
    hop: int
    context: str | None = None  # the secondary anchor (node key) for expansion prompts


@dataclass
class NodeScore:
    """A memory found in a group of N responses."""

    key: str
    surface: str
    kind: str
    count: int
    strength: float
    provenance: list[str] = field(default_factory=list)


def anchor_aliases(anchor: str) -> set[str]:
    """Normalized forms that refer to the anchor: the full name and its contiguous name parts."""
    tokens = [t for t in normalize(anchor).split() if t]
    aliases = {" ".join(tokens)} if tokens else set()
    for size in range(1, len(tokens)):
        for start in range(len(tokens) - size + 1):
            part = " ".join(tokens[start : start + size])
            if len(part) >= 4 and part not in STOP_CAPS:
                aliases.add(part)
    return aliases


def alias_pattern(aliases: Iterable[str]) -> re.Pattern[str]:
    """Case-insensitive whole-word regex matching any alias (possessives included)."""
    parts = sorted((re.escape(a) for a in aliases if a), key=len, reverse=True)
    if not parts:
        return re.compile(r"(?!x)x")
    return re.compile(r"(?i)(?<![\w])(?:" + "|".join(parts) + r")(?![\w])")


def mentions_anchor(text: str, aliases: set[str]) -> bool:
    """Does `text` name the anchor (any alias, case-insensitive, whole words)?"""
    return bool(alias_pattern(aliases).search(text.replace("’", "'")))


REFUSAL = re.compile(
    r"(?i)\b(i (?:do not|don't) (?:know|have)|i'm not (?:aware|familiar|sure)|i am not (?:aware|familiar|sure)|"
    r"no (?:information|record|data) (?:about|on)|not a (?:well-)?known|cannot find|could not find|"
    r"there is no (?:widely )?(?:known|notable|public))"
)


def carried_by_most(names: Iterable[str], texts: Sequence[str]) -> set[str]:
    """The `names` (normalized) that more than half of `texts` name, whole words: the target under another
    name (an anchor given as a description or a nickname), never another entity; none without texts."""
    return {n for n in names if 2 * sum(bool(alias_pattern({n}).search(t)) for t in texts) > len(texts) > 0}


def recognition(responses: Sequence[Response], aliases: set[str]) -> float:
    """Share of responses that name the anchor without refusing: does the model know it at all?"""
    return recognized_share([r.text for r in responses], aliases)


def recognized_share(texts: Sequence[str], aliases: set[str]) -> float:
    """Share of `texts` that name the anchor (any of `aliases`) without refusing; 0.0 for none."""
    if not texts:
        return 0.0
    pattern = alias_pattern(aliases)
    return sum(bool(pattern.search(t.replace("’", "'"))) and not REFUSAL.search(t) for t in texts) / len(texts)


def fold_aliases(counts: Counter[str], kinds: dict[str, str]) -> dict[str, str]:
    """Map short entity keys to the one longer name they end ("al-kuwaiti" -> "basil mahfouz al-kuwaiti").

    Folding is only done where unambiguous: exactly one longer entity ends with the short key, that
    entity is a plain name (no connector words such as "of"), and it is mentioned at least as often.
    """
    entities = [k for k in counts if kinds.get(k) == "entity"]
    canonical = {}
    for key in entities:
        longer = [k for k in entities if k != key and k.endswith(" " + key)]
        if len(longer) != 1:
            continue
        target = longer[0]
        if set(target.split()) & CONNECTORS or counts[target] < counts[key]:
            continue
        canonical[key] = target
    return canonical


def mentions_by_response(responses: Sequence[Response], aliases: set[str]) -> dict[str, list[Mention]]:
    """Extracted, alias-folded mentions of each response, anchor mentions removed."""
    raw = {r.id: extract(r.text) for r in responses}
    kinds = {m.key: m.kind for ms in raw.values() for m in ms}
    surfaces = {m.key: m.surface for ms in raw.values() for m in ms}
    counts = Counter(m.key for ms in raw.values() for m in ms)
    folded = fold_aliases(counts, kinds)
    full_name = max(aliases, key=len) if aliases else ""
    out: dict[str, list[Mention]] = {}
    for rid, mentions in raw.items():
        seen: dict[str, Mention] = {}
        for m in mentions:
            key = folded.get(m.key, m.key)
            if key in aliases or m.key in aliases or (full_name and full_name in key):
                continue  # the anchor itself, or garbled text around its full name
            surface = surfaces[key] if key != m.key else m.surface
            seen.setdefault(key, Mention(key, surface, kinds.get(key, m.kind)))
        out[rid] = list(seen.values())
    return out


def score(responses: Sequence[Response], aliases: set[str], tau: float,
          mentions: dict[str, list[Mention]] | None = None) -> list[NodeScore]:
    """Nodes with s(v) >= tau, strongest first.

    Responses are grouped by prompt (each prompt sampled N times); s(v) is the largest share of
    one prompt's N responses that mention v, so a fact recalled consistently under one facet
    question ("Where was X born?") counts as strongly memorized. With a single prompt this is
    exactly MAGE's s(v) = (1/N) * #responses mentioning v. `count` is the total over all prompts.
    """
    if not responses:
        return []
    mentions = mentions or mentions_by_response(responses, aliases)
    per_prompt: dict[str, Counter[str]] = defaultdict(Counter)
    prompt_sizes: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    provenance: dict[str, list[str]] = defaultdict(list)
    surfaces: dict[str, Counter[str]] = defaultdict(Counter)
    kinds: dict[str, str] = {}
    for response in responses:
        prompt_sizes[response.prompt] += 1
        for m in mentions.get(response.id, []):
            per_prompt[response.prompt][m.key] += 1
            counts[m.key] += 1
            provenance[m.key].append(response.id)
            surfaces[m.key][m.surface] += 1
            kinds[m.key] = m.kind
    strength = {
        key: max(per_prompt[p][key] / prompt_sizes[p] for p in prompt_sizes) for key in counts
    }
    nodes = [
        NodeScore(key, surfaces[key].most_common(1)[0][0], kinds[key], counts[key], strength[key], provenance[key])
        for key in counts
        if strength[key] >= tau
    ]
    return sorted(nodes, key=lambda node: (-node.strength, node.key))
