"""When a bounded forget objective stopped pushing: the training text is suppressed, the rest may not be.

NPO and SimNPO weight each forget row's gradient by a factor that falls to zero once the row is
unlikely enough (NPO: 2 sigmoid(beta x log-ratio to the reference); SimNPO: 2 sigmoid(gamma - beta x
mean NLL)); both start at about 1. Once the batch mean stays near zero, the forget term trains nothing
and only the retain term moves the adapter: whatever the held-out probes still recall at that point
stays. On the default world this is how a request fails by suppression rather than forgetting (the
training rows' NLL 3 -> 7-8 by about step 17 while the dev probes keep 0.65x), so the trainer reports
the step, and the request's summary and MLflow run say it in one line.
"""

from __future__ import annotations

from collections.abc import Sequence

GRAD_SCALE = "forget_grad_scale"  # the per-step curve key the bounded objectives record
SATURATED_BELOW = 0.01  # mean gradient factor under which the forget term counts as spent
WINDOW = 5  # consecutive steps it must stay there (one batch can be all easy rows)


def saturation(curves: Sequence[dict], budget_path: Sequence[dict] = (), below: float = SATURATED_BELOW,
               window: int = WINDOW) -> dict | None:
    """The first step at which the forget term's gradient factor had stayed under `below` for `window`
    steps, with the training rows' NLL then and the dev probes' ratio at the first budget point from
    that step on; None when the objective records no factor (GA, RMU, SRA) or never saturated."""
    scales = [(c["step"], c[GRAD_SCALE]) for c in curves if GRAD_SCALE in c]
    run = 0
    for i, (step, scale) in enumerate(scales):
        run = run + 1 if scale < below else 0
        if run < window:
            continue
        start, start_scale = scales[i - window + 1]
        at = next((c for c in curves if c["step"] == start), {})
        later = [p for p in budget_path if p["step"] >= start and "dev_ratio" in p]
        return {"step": start, GRAD_SCALE: start_scale, "forget_nll": at.get("forget_nll"),
                "dev_ratio": later[0]["dev_ratio"] if later else None,
                "dev_ratio_last": later[-1]["dev_ratio"] if later else None, "steps": len(curves)}
    return None


def describe(sat: dict | None, budget_met: bool) -> str | None:
    """One line for a reader of a request that did not meet its dev target, or None when there is
    nothing to say (no saturation, or the target was met anyway)."""
    if sat is None or budget_met:
        return None
    dev = (f"; the dev probes kept {sat['dev_ratio_last']:.2f}x of their recall" if sat.get("dev_ratio_last")
           is not None else "")
    nll = f" (training rows' NLL {sat['forget_nll']:.1f})" if sat.get("forget_nll") is not None else ""
    return (f"the forget term stopped pushing at step {sat['step']} of {sat['steps']}{nll}: the training text is "
            f"suppressed{dev}. Suppression, not forgetting: a smaller NPO beta or more varied forget rows "
            "keep the objective working longer")
