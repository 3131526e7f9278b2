"""The extractive summarizer that derives memory items from their sources.

Derived items (summaries, facts, notes) are regenerated with this same function when some of
their sources are forgotten, so a regenerated summary is exactly what the summary would have been
had the forgotten sources never existed. Extractive on purpose: it cannot invent content, and
the world model is too small to summarize.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from lethe.mining.extract import split_sentences

GENERATOR = "extractive:first-statement"


def statements(text: str) -> list[str]:
    """The declarative sentences of `text` (questions dropped)."""
    return [s.strip() for s in split_sentences(text) if s.strip() and not s.strip().endswith("?")]


def summarize(sources: Sequence[str], keep: Callable[[str], bool] = lambda s: True) -> str:
    """The first kept statement of every source, in order, without repeats."""
    picked: list[str] = []
    for text in sources:
        first = next((s for s in statements(text) if keep(s)), None)
        if first and first not in picked:
            picked.append(first)
    return " ".join(picked)
