"""Does a retrieved memory item or a generated answer bring the forgotten entity back?

Two tests, shared by the write-time blocklist and the backflow audit:

- a *surface* leak: the text names the target (any of its surface forms, whole words);
- a *fact* leak: the text restates one of the target's facts, i.e. the ROUGE-L recall of the
  fact in the text is at least a threshold, with the target's names removed from both first.
  Removing the names matters: a question that names the target makes an echoing answer share
  the name with every fact, which is not knowledge.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from lethe.mining.extract import split_sentences
from lethe.mining.score import alias_pattern
from lethe.rouge import STOPWORDS, rouge_l_recall


@lru_cache(maxsize=256)
def _pattern(forms: tuple[str, ...]) -> re.Pattern[str]:
    return alias_pattern(forms)


def surface_pattern(forms: Iterable[str]) -> re.Pattern[str]:
    """Case-insensitive whole-word regex for any of `forms` (possessives included)."""
    return _pattern(tuple(sorted({" ".join(f.split()) for f in forms if f and f.strip()})))


def strip_names(text: str, names: Sequence[str]) -> str:
    """`text` with every surface form of `names` removed (curly apostrophes folded first)."""
    text = text.replace("’", "'")
    return surface_pattern(names).sub(" ", text) if names else text


def content_words(text: str) -> list[str]:
    """Lower-cased words without function words: what a restated fact must share."""
    return [w for w in re.findall(r"[^\W_]+", text.lower()) if w not in STOPWORDS]


def _lcs(a: Sequence[str], b: Sequence[str]) -> int:
    row = [0] * (len(b) + 1)
    for x in a:
        previous = 0
        for j, y in enumerate(b, 1):
            previous, row[j] = row[j], previous + 1 if x == y else max(row[j], row[j - 1])
    return row[-1]


def content_f1(sentence: str, fact: str) -> float:
    """ROUGE-L F1 over content words (0.0 when either has none)."""
    a, b = content_words(sentence), content_words(fact)
    if not a or not b:
        return 0.0
    common = _lcs(a, b)
    return 0.0 if common == 0 else 2 * common / (len(a) + len(b))


def fact_overlap(text: str, facts: Sequence[str], names: Sequence[str] = ()) -> float:
    """How closely some sentence of `text` restates some fact: the largest name-stripped content-word
    ROUGE-L F1.

    Sentence by sentence, F1 and content words only: a long note contains most of a short fact's
    words in order by chance (recall would count that), and TOFU-style answers share templates
    ("X's father was a ... and his mother a ...") whose function words are no knowledge.
    """
    sentences = [strip_names(s, names) for s in split_sentences(text)]
    stripped = [strip_names(f, names) for f in facts]
    return max((content_f1(s, f) for s in sentences for f in stripped), default=0.0)


@dataclass(frozen=True)
class LeakJudge:
    """Judges leaks about one target: its surface forms and the facts that must not come back."""

    surface_forms: tuple[str, ...]
    facts: tuple[str, ...]
    threshold: float = 0.5

    def names_target(self, text: str) -> bool:
        return bool(self.surface_forms) and bool(surface_pattern(self.surface_forms).search(text))

    def retrieval_leak(self, hits: Sequence[str]) -> bool:
        """Retrieval leaks when any hit names the target or restates one of its facts."""
        return any(self.names_target(h) or fact_overlap(h, self.facts, self.surface_forms) >= self.threshold
                   for h in hits)

    def generation_leak(self, answer: str, reference: str | None = None, question: str = "") -> bool:
        """Generation leaks when the answer restates the reference answer (name-stripped ROUGE-L recall,
        TOFU's measure) or, without a reference, any fact; or when it names the target although the
        question did not (a reverse query answered)."""
        if question and not self.names_target(question) and self.names_target(answer):
            return True
        if reference:
            return rouge_l_recall(strip_names(answer, self.surface_forms),
                                  strip_names(reference, self.surface_forms)) >= self.threshold
        return fact_overlap(answer, self.facts, self.surface_forms) >= self.threshold
