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

`space="model"` takes the point where the audit's attack actually goes: the attack fine-tunes every
weight of the (merged) model with Adam, whose first step moves each weight by lr x sign(gradient), so
the worst nearby point is an L-infinity step of rho on every weight of the model (embeddings, norms,
the base projections under the adapter), not an L2 step of the adapter. That needs the forget
gradient for every weight of the model: a third pass, and memory for a full gradient and a copy of the
weights (fine for small models, heavy for a 7B one). NPO's reference (the adapter disabled) is then
taken at the moved base weights too.

Relearning-aware forgetting (`InnerAttack`, first-order meta-unlearning in the manner of TAR, Tamirisa et
al. 2024, and MUDMAN, Sondej et al. 2025) replaces that one sign step by the attack itself: every model
weight but the adapter's is fine-tuned for a few AdamW steps on other forget rows than the step's batch
(the audit's attack trains on some forget rows and is scored on others), the forget gradient of the
adapter is taken there, and the weights are put back. Merging the adapter and then fine-tuning the merged
weights is the same as fine-tuning the base weights under the adapter, so this is exactly where the
audit's attack would take the model after those steps. A bounded objective (NPO) whose term is spent at
theta is live again at that point wherever the attack brings the entity back. Costs `steps` full-model
forward/backward passes of the attack rows per training step, and a copy of the weights plus AdamW's
state (fine for small models, heavy for a 7B one). The attack's shift of the weights (`relearning_shift`)
can be kept and reused for the next few steps (`attack_shift`; `unlearn.inner_attack_every`): the adapter
moves little in a few steps, so the attack would move the weights nearly the same way, and a reused
shift costs one forward/backward pass of the forget batch instead of `steps` of the attack rows.

Disruption masking (`DisruptionMask`, the "DM" of MUDMAN) goes after either: the forget gradient is kept
only on the coordinates where it points the same way as a running average of the retain gradient, so
no coordinate of the update buys forgetting with what must be kept (to first order). Deeper forgetting
has so far cost other entities faster than it removed the target; the mask is aimed at that trade. On
LoRA factors the signs agree at chance (the mask keeps 0.47-0.51 of the moving coordinates on the
default world), so there it acts mostly as a weaker forget step: README, "Not done yet".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from lethe.errors import LetheError
from lethe.unlearn.methods import nll

Grads = list[torch.Tensor | None]


@dataclass(frozen=True)
class InnerAttack:
    """A relearning attack simulated inside one training step: `steps` AdamW steps at `lr` (gradients
    clipped to norm 1, as the audit's attack) of `loss` on `batch`, over every weight but the adapter's."""

    batch: Any
    steps: int
    lr: float
    loss: Callable[[Any, Any], torch.Tensor] = nll


class DisruptionMask:
    """Disruption masking (Sondej et al. 2025, MUDMAN): the forget gradient is zeroed on every coordinate
    where its sign differs from that of a running average of the retain gradient (an EMA with `momentum`;
    0 uses the step's own). The average is training state: `state_dict` goes into the checkpoint."""

    def __init__(self, momentum: float):
        if not 0 <= momentum < 1:
            raise LetheError(f"disruption momentum must be in [0, 1), got {momentum}")
        self.momentum = momentum
        self.average: Grads | None = None

    def observe(self, retain_grads: Grads) -> None:
        """Fold this step's retain gradient into the average (the first one starts it)."""
        if self.average is None:
            self.average = [None] * len(retain_grads)
        for i, g in enumerate(retain_grads):
            if g is None:
                continue
            if self.average[i] is None:
                self.average[i] = g.detach().clone()
            else:
                self.average[i].mul_(self.momentum).add_(g, alpha=1 - self.momentum)

    def apply(self, forget_grads: Grads) -> tuple[Grads, float]:
        """The forget gradient masked to the coordinates that agree in sign with the retain average (a
        weight the retain term never reaches is kept whole), and the share of nonzero coordinates kept."""
        if self.average is None:
            raise LetheError("disruption masking needs a retain gradient, and this step had none: use a "
                             "method with a retain term and a non-empty retain set")
        masked: Grads = []
        kept = total = 0
        for g, average in zip(forget_grads, self.average):
            if g is None or average is None:
                masked.append(g)
                continue
            agree = torch.sign(g) == torch.sign(average)
            masked.append(g * agree)
            moving = g != 0
            kept += int((agree & moving).sum())
            total += int(moving.sum())
        return masked, kept / total if total else 1.0

    def state_dict(self) -> dict:
        """What a checkpoint keeps: the momentum and the retain average."""
        return {"momentum": self.momentum, "average": self.average}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a checkpoint's `state_dict`."""
        self.momentum, self.average = state["momentum"], state["average"]


def shaped_backward(method, model, forget_batch, retain_batch, params: Sequence[torch.Tensor], *,
                    retain_balance: float | None = None, sam_rho: float = 0.0,
                    sam_space: str = "adapter", attack: InnerAttack | None = None,
                    attack_shift: Grads | None = None,
                    disruption: DisruptionMask | None = None) -> tuple[torch.Tensor, dict]:
    """Backward pass of `method`'s terms that leaves in `params`' `.grad` the forget gradient (taken at
    the sharpness-aware point when `sam_rho` > 0: theta + rho g_f / |g_f| over `params` for
    `sam_space="adapter"`, every model weight + rho sign(its forget gradient) for "model"; after the
    simulated relearning `attack` when one is given, or at a shift an earlier attack made
    (`relearning_shift`: `attack_shift`, how `unlearn.inner_attack_every` reuses one); masked by
    `disruption` when one is given, after it has seen this step's retain gradient) plus the retain
    gradient (rescaled to `retain_balance` x the forget gradient's norm when that is given).

    Returns the loss to report (forget term + scaled retain term, at theta) and the curve parts.
    """
    if attack is not None and attack_shift is not None:
        raise LetheError("give the inner relearning attack or a shift it already made, not both")
    if sam_rho > 0 and (attack is not None or attack_shift is not None):
        raise LetheError("sharpness-aware forgetting and the inner relearning attack are two answers to one "
                         "question: set unlearn.sam_rho or unlearn.inner_attack_steps, not both")
    forget_term, retain_term, parts = method.terms(model, forget_batch, retain_batch)
    retain_grads: Grads = []
    if retain_term is not None:
        retain_term.backward()
        retain_grads = _take(params)
        if disruption is not None:
            disruption.observe(retain_grads)
    if attack is not None and attack.steps > 0:
        attack_shift, attack_parts = relearning_shift(model, attack)
        parts = {**parts, **attack_parts}
    if attack_shift is not None:  # the gradient at theta is never used
        forget_grads, shifted_parts = _grads_at_shift(method, model, forget_batch, params, attack_shift)
        parts = {**parts, **shifted_parts}
    else:
        forget_term.backward()
        forget_grads = _take(params)
    if sam_rho > 0:
        forget_grads, sharp_parts = _sharpness_aware_grads(method, model, forget_batch, params, forget_grads, sam_rho,
                                                           sam_space)
        parts = {**parts, **sharp_parts}
    if disruption is not None:
        forget_grads, kept = disruption.apply(forget_grads)
        parts = {**parts, "disruption_kept": kept}
    forget_norm, scale = _norm(forget_grads), 1.0
    if retain_grads and retain_balance is not None:
        retain_norm = _norm(retain_grads)
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
                           rho: float, space: str) -> tuple[Grads, dict]:
    if space == "adapter":
        moved, norm = list(params), _norm(grads)
        steps = [None if g is None or norm == 0 else g * (rho / norm) for g in grads]
    elif space == "model":
        moved = model_weights(model)
        steps = [None if g is None else torch.sign(g) * rho for g in _forget_gradient(method, model, forget_batch, moved)]
    else:
        raise LetheError(f"unknown sharpness-aware space {space!r}; known: adapter, model")
    if all(step is None for step in steps):
        return grads, {"sam_forget_term": float("nan")}
    sharp, sharp_term, _ = _forget_grads_moved(method, model, forget_batch, params, moved, steps)
    return sharp, {"sam_forget_term": sharp_term.item()}


def _forget_grads_moved(method, model, forget_batch, params: Sequence[torch.Tensor], moved: Sequence[torch.Tensor],
                        steps: Grads) -> tuple[Grads, torch.Tensor, dict]:
    """The forget gradient for `params` (and the term and its parts) with each of `moved` shifted by its
    step (None: left alone); the moved tensors are put back exactly on return."""
    with moved_by(moved, steps):
        term, parts = method.forget_term(model, forget_batch)
        term.backward()
        return _take(params), term, parts


@contextmanager
def moved_by(tensors: Sequence[torch.Tensor], steps: Grads) -> Iterator[None]:
    """Each tensor shifted by its step (None: left alone) for the block, put back exactly however it ends."""
    originals = [None if step is None else t.detach().clone() for t, step in zip(tensors, steps)]
    try:
        with torch.no_grad():
            for t, step in zip(tensors, steps):
                if step is not None:
                    t.add_(step.to(t.dtype))
        yield
    finally:
        with torch.no_grad():
            for t, original in zip(tensors, originals):
                if original is not None:
                    t.copy_(original)


def relearning_shift(model, attack: InnerAttack) -> tuple[Grads, dict]:
    """Where `attack` moves every weight but the adapter's: per weight of `model_weights`, the attacked
    value minus the current one (None where the attack left a weight alone). The weights, their
    trainable flags and gradients are exactly what they were on return."""
    weights = model_weights(model)
    flags = [w.requires_grad for w in weights]
    originals = [w.detach().clone() for w in weights]
    try:
        for w in weights:
            w.requires_grad_(True)
        optimizer = torch.optim.AdamW(weights, lr=attack.lr)
        attack_losses = []
        for _ in range(attack.steps):
            loss = attack.loss(model, attack.batch)
            for w, g in zip(weights, torch.autograd.grad(loss, weights, allow_unused=True)):
                w.grad = g
            torch.nn.utils.clip_grad_norm_(weights, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            attack_losses.append(loss.item())
        with torch.no_grad():
            attacked_loss = attack.loss(model, attack.batch).item()
            shift: Grads = [None if torch.equal(w, o) else w - o for w, o in zip(weights, originals)]
    finally:
        with torch.no_grad():
            for w, original, flag in zip(weights, originals, flags):
                w.copy_(original)
                w.grad = None
                w.requires_grad_(flag)
    return shift, {"attack_loss_before": attack_losses[0] if attack_losses else attacked_loss,
                   "attack_loss_after": attacked_loss}


def _grads_at_shift(method, model, forget_batch, params: Sequence[torch.Tensor], shift: Grads) -> tuple[Grads, dict]:
    """The forget gradient for `params` with every model weight moved by `shift` (`relearning_shift`);
    the weights are put back on return."""
    weights = model_weights(model)
    if len(shift) != len(weights):
        raise LetheError(f"a relearning shift for {len(shift)} weights cannot move a model with {len(weights)}")
    grads, term, term_parts = _forget_grads_moved(method, model, forget_batch, params, weights, shift)
    return grads, {"attacked_forget_term": term.item(), **{f"attacked_{k}": v for k, v in term_parts.items()}}


def model_weights(model: torch.nn.Module) -> list[torch.Tensor]:
    """The weights of the model as it is merged and attacked: every parameter but the LoRA factors."""
    return [p for name, p in model.named_parameters() if "lora_" not in name]


def _forget_gradient(method, model, forget_batch, weights: Sequence[torch.Tensor]) -> Grads:
    """The forget term's gradient for `weights`, frozen ones included (their flags are put back)."""
    flags = [w.requires_grad for w in weights]
    for w in weights:
        w.requires_grad_(True)
    try:
        term, _ = method.forget_term(model, forget_batch)
        return list(torch.autograd.grad(term, list(weights), allow_unused=True))
    finally:
        for w, flag in zip(weights, flags):
            w.requires_grad_(flag)


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
