"""Metric correctness on hand-built log-prob fixtures (values computed by hand)."""

import math

import numpy as np
import pytest
from scipy.stats import ks_2samp

from lethe.evaluate.mia import attack_scores, auc
from lethe.evaluate.tofu import (
    UTILITY_KEYS,
    avg_loss,
    closer_to_1_better,
    forget_quality,
    model_utility,
    normalised_prob,
    true_better,
    truth_ratios,
)
from lethe.rouge import mean_rouge_l_recall, novel_recall, rouge_l_recall, tokens


def test_avg_loss_is_mean_nll():
    assert avg_loss([-1.0, -2.0, -3.0]) == pytest.approx(2.0)


def test_truth_ratio_by_hand():
    # paraphrased avg loss 0.5; perturbed avg losses 1.0 and 2.0 -> exp(-1.5) / exp(-0.5) = e^-1
    ratios = truth_ratios([0.5], [[1.0, 2.0]])
    assert ratios[0] == pytest.approx(math.exp(-1.0), rel=1e-6)


def test_truth_ratio_aggregations():
    assert closer_to_1_better(np.array([0.5, 2.0])) == pytest.approx(0.5)
    assert true_better(np.array([0.25, 1.5])) == pytest.approx(0.375)


def test_normalised_probability():
    assert normalised_prob(0.0, [math.log(2), math.log(2)]) == pytest.approx(0.5)


def test_forget_quality_is_scipy_ks_pvalue():
    a, b = [0.1, 0.4, 0.35, 0.8, 0.9], [0.5, 0.55, 0.6, 0.95, 1.2, 1.3]
    assert forget_quality(a, b) == pytest.approx(ks_2samp(a, b).pvalue)
    assert forget_quality(a, a) == pytest.approx(1.0)


def test_model_utility_is_harmonic_mean_of_nine():
    metrics = {k: 1.0 for k in UTILITY_KEYS}
    metrics[UTILITY_KEYS[-1]] = 0.5
    assert model_utility(metrics) == pytest.approx(9 / (8 + 2))
    metrics[UTILITY_KEYS[0]] = 0.0
    assert model_utility(metrics) == 0.0


def test_rouge_l_recall_by_hand():
    assert rouge_l_recall("the cat sat on the mat", "the cat") == pytest.approx(1.0)
    assert rouge_l_recall("a dog", "the cat sat") == 0.0
    assert rouge_l_recall("he was born in Paris", "born in Kuwait City") == pytest.approx(2 / 4)
    assert mean_rouge_l_recall(["the cat", "a dog"], ["the cat", "the cat"]) == pytest.approx(0.5)


def test_novel_recall_counts_only_what_was_not_handed_over():
    given = set(tokens("He writes French literature."))
    # "french literature" was handed over: only "prix" and "goncourt" count, and one of them came back
    assert novel_recall("French literature, the Prix", "the Prix Goncourt in French literature", given) == 0.5
    assert novel_recall("anything", "He writes French literature", given) is None  # nothing left to find
    assert novel_recall("Paris Paris Paris", "Paris and Paris", set()) == pytest.approx(2 / 3)  # clipped counts
    assert tokens("Honored with Prizes") == ["honor", "with", "prize"]  # stemmed as ROUGE compares them


def test_auc_by_hand():
    assert auc([3, 4], [1, 2]) == 1.0
    assert auc([1, 2], [3, 4]) == 0.0
    assert auc([1, 1], [1, 1]) == pytest.approx(0.5)


def test_attack_scores_by_hand():
    stats = {"logp": np.array([-0.1, -2.0, -0.3, -4.0, -0.2]), "mu": np.zeros(5), "sigma": np.full(5, 2.0)}
    scores = attack_scores(stats, "abc", k=0.4)
    assert scores["loss"] == pytest.approx(-6.6 / 5)
    assert scores["min_k"] == pytest.approx((-4.0 - 2.0) / 2)
    assert scores["min_k_plus_plus"] == pytest.approx((-2.0 - 1.0) / 2)
