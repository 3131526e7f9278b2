"""TOFU metrics with open-unlearning's names and aggregation.

Per sample, from answer-token log-probs (avg_loss = mean NLL over the answer tokens):
- prob                 exp(-avg_loss(answer))                                    ("Q_A_Prob")
- prob (normalised)    p(answer) / (p(answer) + sum_j p(perturbed_j)), p = exp(-avg_loss)
                       for real authors and world facts                          ("Q_A_Prob_normalised")
- rouge                ROUGE-L recall of the greedy answer                        ("Q_A_ROUGE")
- truth ratio          exp(-mean_j avg_loss(perturbed_j)) / exp(-avg_loss(paraphrased))
Aggregates: forget truth ratio = mean(min(tr, 1/tr)) ("closer to 1 is better"); retain, real
authors and world facts = mean(max(0, 1 - tr)) ("true answer better"). forget_quality = p-value
of the two-sample KS test between the truth ratios of the unlearned model and of the retain
model on the forget split. model_utility = harmonic mean of the nine retain/ra/wf numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import hmean, ks_2samp

from lethe.data import PerturbedQA
from lethe.evaluate import metrics as M
from lethe.evaluate.metrics import UTILITY_PARTS
from lethe.llm.backend import Backend
from lethe.rouge import rouge_l_recall

EPS = 1e-10
UTILITY_KEYS = UTILITY_PARTS  # declared in lethe.evaluate.metrics


def avg_loss(logps: Sequence[float]) -> float:
    """Mean answer-token NLL."""
    return -float(np.mean(logps)) if len(logps) else float("inf")


def truth_ratios(paraphrased_losses: Sequence[float], perturbed_losses: Sequence[Sequence[float]]) -> np.ndarray:
    """Per-sample truth ratio: exp(-mean perturbed avg_loss) / exp(-paraphrased avg_loss)."""
    correct = np.exp(-np.asarray(paraphrased_losses, dtype=float))
    wrong = np.exp(-np.asarray([np.mean(p) for p in perturbed_losses], dtype=float))
    return wrong / (correct + EPS)


def closer_to_1_better(ratios: np.ndarray) -> float:
    return float(np.mean(np.minimum(ratios, 1.0 / (ratios + EPS))))


def true_better(ratios: np.ndarray) -> float:
    return float(np.mean(np.maximum(0.0, 1.0 - ratios)))


def normalised_prob(answer_loss: float, option_losses: Sequence[float]) -> float:
    """p(answer) / (p(answer) + sum p(options)) with length-normalised probabilities."""
    correct = np.exp(-answer_loss)
    return float(correct / (correct + np.sum(np.exp(-np.asarray(option_losses, dtype=float))) + EPS))


def forget_quality(unlearned_ratios: Sequence[float], retain_model_ratios: Sequence[float]) -> float:
    """KS-test p-value: how indistinguishable the unlearned model is from the retain model."""
    return float(ks_2samp(unlearned_ratios, retain_model_ratios).pvalue)


def model_utility(metrics: dict[str, float]) -> float:
    """Harmonic mean of the nine retain / real-author / world-fact numbers (0 if any is 0)."""
    values = [max(metrics[k], 0.0) for k in UTILITY_KEYS]
    return 0.0 if min(values) <= 0 else float(hmean(values))


@dataclass
class SplitScores:
    """Per-sample scores of one split, kept for forget quality and reports."""

    prob: np.ndarray
    prob_normalised: np.ndarray
    rouge: np.ndarray
    truth_ratio: np.ndarray
    answers: list[str]


def score_split(backend: Backend, rows: Sequence[PerturbedQA], max_new_tokens: int) -> SplitScores:
    """Log-probs of answer / paraphrase / perturbations and greedy ROUGE for every row."""
    answers = backend.greedy([r.question for r in rows], max_new_tokens)
    flat: list[tuple[str, str]] = []
    for r in rows:
        flat.append((r.question, r.answer))
        flat.append((r.question, r.paraphrased_answer or r.answer))
        flat.extend((r.question, p) for p in r.perturbed_answers)
    losses = [avg_loss(lp) for lp in backend.answer_logprobs(flat)]
    prob, norm, para, pert = [], [], [], []
    i = 0
    for r in rows:
        k = len(r.perturbed_answers)
        answer_loss, para_loss, pert_losses = losses[i], losses[i + 1], losses[i + 2 : i + 2 + k]
        i += 2 + k
        prob.append(np.exp(-answer_loss))
        norm.append(normalised_prob(answer_loss, pert_losses))
        para.append(para_loss)
        pert.append(pert_losses)
    return SplitScores(
        prob=np.asarray(prob), prob_normalised=np.asarray(norm),
        rouge=np.asarray([rouge_l_recall(a, r.answer) for a, r in zip(answers, rows)]),
        truth_ratio=truth_ratios(para, pert), answers=answers,
    )


def tofu_metrics(
    backend: Backend,
    forget: Sequence[PerturbedQA],
    retain: Sequence[PerturbedQA],
    real_authors: Sequence[PerturbedQA],
    world_facts: Sequence[PerturbedQA],
    retain_model_forget_ratios: Sequence[float] | None,
    max_new_tokens: int = 96,
) -> tuple[dict[str, float], dict[str, SplitScores]]:
    """All TOFU numbers for one model; forget_quality only when the retain model's ratios are given."""
    splits = {"forget": forget, "retain": retain, "ra": real_authors, "wf": world_facts}
    scores = {name: score_split(backend, rows, max_new_tokens) for name, rows in splits.items() if rows}
    m: dict[str, float] = {}
    if "forget" in scores:
        f = scores["forget"]
        m.update(forget_Q_A_Prob=float(f.prob.mean()), forget_Q_A_ROUGE=float(f.rouge.mean()),
                 forget_Truth_Ratio=closer_to_1_better(f.truth_ratio))
        if retain_model_forget_ratios is not None:
            m[M.FORGET_QUALITY] = forget_quality(f.truth_ratio, retain_model_forget_ratios)
    if "retain" in scores:
        r = scores["retain"]
        m.update(retain_Q_A_Prob=float(r.prob.mean()), retain_Q_A_ROUGE=float(r.rouge.mean()),
                 retain_Truth_Ratio=true_better(r.truth_ratio))
    for name in ("ra", "wf"):
        if name in scores:
            s = scores[name]
            m.update({f"{name}_Q_A_Prob_normalised": float(s.prob_normalised.mean()),
                      f"{name}_Q_A_ROUGE": float(s.rouge.mean()), f"{name}_Truth_Ratio": true_better(s.truth_ratio)})
    if all(k in m for k in UTILITY_KEYS):
        m[M.MODEL_UTILITY] = model_utility(m)
    return m, scores
