"""What a world model knows: greedy answers scored with ROUGE-L recall against the gold answers."""

from __future__ import annotations

from collections.abc import Sequence

from lethe.data import QA, author_qa, load_holdout
from lethe.llm.backend import Backend
from lethe.rouge import rouge_l_recall


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def recall_on(backend: Backend, pairs: Sequence[QA], max_new_tokens: int) -> list[float]:
    """ROUGE-L recall of the greedy answer for each pair."""
    answers = backend.greedy([qa.question for qa in pairs], max_new_tokens=max_new_tokens)
    return [rouge_l_recall(a, qa.answer) for a, qa in zip(answers, pairs)]


def memorization_report(
    backend: Backend, authors: Sequence[dict], holdout: str = "holdout05", max_new_tokens: int = 96
) -> dict:
    """Mean recall per author, per split (forget/retain/trained) and on never-seen holdout authors."""
    per_author = []
    for author in authors:
        scores = recall_on(backend, author_qa(author["index"]), max_new_tokens)
        per_author.append({**author, "rouge_l_recall": _mean(scores)})
    by_split = {
        split: _mean([a["rouge_l_recall"] for a in per_author if a["split"] == split])
        for split in ("forget", "retain")
    }
    return {
        "trained_authors": _mean([a["rouge_l_recall"] for a in per_author]),
        **{f"{split}_authors": value for split, value in by_split.items()},
        "holdout_authors": _mean(recall_on(backend, load_holdout(holdout), max_new_tokens)),
        "holdout_split": holdout,
        "per_author": per_author,
    }
