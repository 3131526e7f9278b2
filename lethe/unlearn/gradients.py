"""Shaping the unlearning gradient: retain/forget balance and sharpness-aware forgetting.

Both need the forget and retain gradients apart, so both go through `shaped_backward`, which leaves
the gradient to apply in every parameter's `.grad`.

Sharpness-aware forgetting (Fan et al., ICML 2025, "Towards LLM Unlearning Resilient to Relearning
Attacks: A Sharpness-Aware Minimization Perspective and Beyond"): a suppressed entity sits in a
sharp basin of the forget loss, and a few fine-tuning steps on its facts climb straight back out
(the audit's relearning attack). Robustness to that attack is min_theta max_{|delta| <= rho}
l_f(theta + delta) + l_r(theta); as in SAM, the inner max is one normalized gradient step of size
rho up the forget loss (the direction that undoes the forgetting fastest, which is where relearning
goes first), and the update takes the forget gradient there and the retain gradient at theta.
It costs one more forward and backward pass of the forget batch per step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

Grads = list[torch.Tensor | None]


def shaped_backward(method, model, forget_batch, retain_batch, params: Sequence[torch.Tensor], *,
                    retain_balance: float | None = None, sam_rho: float = 0.0) -> tuple[torch.Tensor, dict]:
    """Backward pass of `method`'s terms that leaves in `p.grad` the forget gradient (taken at the
    sharpness-aware point theta + rho g_f / |g_f| when `sam_rho` > 0) plus the retain gradient
    (rescaled to `retain_balance` x the forget gradient's norm when that is given).

    Returns the loss to report (forget term + scaled retain term, at theta) and the curve parts.
    """
    forget_term, retain_term, parts = method.terms(model, forget_batch, retain_batch)
    retain_grads: Grads = []
    if retain_term is not None:
        retain_term.backward()
        retain_grads = _take(params)
    forget_term.backward()
    forget_grads = _take(params)
    if sam_rho > 0:
        forget_grads, sharp_parts = _sharpness_aware_grads(method, model, forget_batch, params, forget_grads, sam_rho)
        parts = {**parts, **sharp_parts}
    forget_norm, scale = _norm(forget_grads), 1.0
    if retain_grads:
        retain_norm = _norm(retain_grads)
        if retain_balance is not None:
            scale = retain_balance * forget_norm / retain_norm if retain_norm > 0 else 0.0
            parts = {**parts, "retain_grad_norm": retain_norm, "retain_scale": scale}
    for p, g_forget, g_retain in zip(params, forget_grads, retain_grads or [None] * len(params)):
        p.grad = _add(g_forget, None if g_retain is None else g_retain * scale)
    total = forget_term.detach() + (scale * retain_term.detach() if retain_term is not None else 0.0)
    return total, {**parts, "forget_grad_norm": forget_norm}


def balanced_backward(method, model, forget_batch, retain_batch, params: Sequence[torch.Tensor],
                      retain_weight: float) -> tuple[torch.Tensor, dict]:
    """Backward pass whose retain gradient is rescaled to `retain_weight` x the forget gradient's norm.

    On a forget set the model reproduces verbatim (answer NLL near 0), the ascent gradient can be
    hundreds of times smaller than the retain NLL's gradient; Adam then follows the retain term
    alone and GA+GD changes nothing. Rescaling the retain term every step keeps both objectives in play
    whatever their raw magnitudes. Costs a second backward pass. Leaves the sum in `p.grad`.
    """
    return shaped_backward(method, model, forget_batch, retain_batch, params, retain_balance=retain_weight)


def _sharpness_aware_grads(method, model, forget_batch, params: Sequence[torch.Tensor], grads: Grads,
                           rho: float) -> tuple[Grads, dict]:
    norm = _norm(grads)
    if norm == 0:
        return grads, {"sam_forget_term": float("nan")}
    originals = [p.detach().clone() for p in params]
    with torch.no_grad():
        for p, g in zip(params, grads):
            if g is not None:
                p.add_(g, alpha=rho / norm)
    try:
        sharp_term, _ = method.forget_term(model, forget_batch)
        sharp_term.backward()
        sharp = _take(params)
    finally:
        with torch.no_grad():
            for p, original in zip(params, originals):
                p.copy_(original)
    return sharp, {"sam_forget_term": sharp_term.item()}


def _take(params: Sequence[torch.Tensor]) -> Grads:
    """The parameters' gradients, detached; `.grad` is cleared for the next backward."""
    grads = [p.grad.detach().clone() if p.grad is not None else None for p in params]
    for p in params:
        p.grad = None
    return grads


def _add(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    return a if b is None else (b if a is None else a + b)


def _norm(grads: Sequence[torch.Tensor | None]) -> float:
    return math.sqrt(sum(float((g.float() ** 2).sum()) for g in grads if g is not None))
