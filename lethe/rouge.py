"""ROUGE-L recall of a generated answer against the gold answer (open-unlearning semantics)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from rouge_score import rouge_scorer


@lru_cache(maxsize=1)
def _scorer() -> rouge_scorer.RougeScorer:
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l_recall(prediction: str, reference: str) -> float:
    """Share of the reference's longest common subsequence found in the prediction (stemmed)."""
    return _scorer().score(reference, prediction)["rougeL"].recall


def mean_rouge_l_recall(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Mean ROUGE-L recall over aligned prediction/reference pairs (0.0 for an empty list)."""
    if len(predictions) != len(references):
        raise ValueError("predictions and references differ in length")
    if not predictions:
        return 0.0
    return sum(rouge_l_recall(p, r) for p, r in zip(predictions, references)) / len(predictions)
