"""ROUGE-L recall of a generated answer against the gold answer (open-unlearning semantics)."""

from __future__ import annotations

from collections.abc import Sequence, Set
from functools import lru_cache

from rouge_score import rouge_scorer, tokenizers

STOPWORDS = frozenset(  # English function words: never a fact, never a search term
    "a about also an and any are as at be been being both but by can could did do does during for from had "
    "has have he her hers him his how i if in into is it its me more most my no not of on one or other our "
    "she so some such than that the their them then there these they this those through to too very was we "
    "were what when where which while who whom whose why will with would you your".split()
    # the fragments ROUGE's tokenizer cuts from "author's", "don't", "I'm", "we've", "they're", "she'd", "we'll"
    + "s t m ve re d ll".split()
)


@lru_cache(maxsize=1)
def _scorer() -> rouge_scorer.RougeScorer:
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


@lru_cache(maxsize=1)
def _tokenizer() -> tokenizers.DefaultTokenizer:
    return tokenizers.DefaultTokenizer(use_stemmer=True)  # the scorer's own


def rouge_l_recall(prediction: str, reference: str) -> float:
    """Share of the reference's longest common subsequence found in the prediction (stemmed)."""
    return _scorer().score(reference, prediction)["rougeL"].recall


def tokens(text: str) -> list[str]:
    """The text's tokens as ROUGE compares them (lower-cased, stemmed)."""
    return _tokenizer().tokenize(text)


@lru_cache(maxsize=1)
def stopword_tokens() -> frozenset[str]:
    """STOPWORDS as ROUGE tokenizes them (stemmed: "was" is "wa")."""
    return frozenset(token for word in STOPWORDS for token in tokens(word))


def novel_recall(prediction: str, reference: str, given: Set[str]) -> float | None:
    """Share of the reference's tokens outside `given` that the prediction contains (each counted as
    often as the reference has it, at most as often as the prediction does); None when every token of
    the reference is given. With `given` the tokens a relearning attacker trained on (and the question),
    it counts only what the attacker did not hand over."""
    from collections import Counter

    wanted = Counter(token for token in tokens(reference) if token not in given)
    if not wanted:
        return None
    found = Counter(tokens(prediction))
    return sum(min(count, found[token]) for token, count in wanted.items()) / sum(wanted.values())


def mean_rouge_l_recall(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Mean ROUGE-L recall over aligned prediction/reference pairs (0.0 for an empty list)."""
    if len(predictions) != len(references):
        raise ValueError("predictions and references differ in length")
    if not predictions:
        return 0.0
    return sum(rouge_l_recall(p, r) for p, r in zip(predictions, references)) / len(predictions)
