"""Membership inference on forget (trained) vs holdout (never trained) QA: LOSS, zlib, Min-K%, Min-K%++.

Every score is oriented so that higher means "more likely a member". AUC is the probability that
a random forget sample scores above a random holdout sample: about 1 when the model still
remembers the forget set, about 0.5 when the two are indistinguishable.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import torch
from scipy.stats import rankdata

from lethe.llm.backend import Backend
from lethe.llm.batching import collate_qa

ATTACKS = ("loss", "zlib", "min_k", "min_k_plus_plus")


@torch.no_grad()
def token_statistics(backend: Backend, pairs: Sequence[tuple[str, str]]) -> list[dict[str, np.ndarray]]:
    """Per answer token: log p(x_t), and mean/std of log p(z) under p (for Min-K%++)."""
    out = []
    for start in range(0, len(pairs), backend.batch_size):
        chunk = pairs[start : start + backend.batch_size]
        batch = collate_qa([backend.format.encode(q, a) for q, a in chunk], backend.tokenizer.pad_token_id)
        batch = {k: v.to(backend.device) for k, v in batch.items()}
        logits = backend.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        labels = batch["labels"][:, 1:]
        probs = logp.exp()
        mu = (probs * logp).sum(-1)
        sigma = ((probs * logp.square()).sum(-1) - mu.square()).clamp(min=1e-12).sqrt()
        token = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        for row in range(len(chunk)):
            mask = labels[row] != -100
            out.append({"logp": token[row][mask].cpu().numpy(), "mu": mu[row][mask].cpu().numpy(),
                        "sigma": sigma[row][mask].cpu().numpy()})
    return out


def _lowest_mean(values: np.ndarray, k: float) -> float:
    n = max(1, int(len(values) * k))
    return float(np.sort(values)[:n].mean())


def attack_scores(stats: dict[str, np.ndarray], answer: str, k: float = 0.2) -> dict[str, float]:
    """All four member scores of one sample."""
    logp = stats["logp"]
    nll_sum = -float(logp.sum())
    return {
        "loss": float(logp.mean()),
        "zlib": -nll_sum / len(zlib.compress(answer.encode("utf-8"))),
        "min_k": _lowest_mean(logp, k),
        "min_k_plus_plus": _lowest_mean((logp - stats["mu"]) / stats["sigma"], k),
    }


def auc(members: Sequence[float], non_members: Sequence[float]) -> float:
    """P(member score > non-member score), ties counted half (Mann-Whitney U / n1 n2)."""
    ranks = rankdata(np.concatenate([members, non_members]))
    n1, n2 = len(members), len(non_members)
    return float((ranks[:n1].sum() - n1 * (n1 + 1) / 2) / (n1 * n2))


def mia_report(backend: Backend, forget: Sequence[tuple[str, str]], holdout: Sequence[tuple[str, str]],
               k: float = 0.2) -> dict[str, float]:
    """AUC of each attack at telling forget samples from holdout samples."""
    member = [attack_scores(s, a, k) for s, (_, a) in zip(token_statistics(backend, forget), forget)]
    non = [attack_scores(s, a, k) for s, (_, a) in zip(token_statistics(backend, holdout), holdout)]
    return {f"mia_{name}_auc": auc([m[name] for m in member], [n[name] for n in non]) for name in ATTACKS}
