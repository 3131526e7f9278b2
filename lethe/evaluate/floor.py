"""The never-trained floor: when a probe score shows an entity as forgotten as a model that never
knew it.

Such a model still scores above zero on an entity's probes (its answers share their generic words),
so a ratio target below that floor cannot be met, and a score within a margin of it is as forgotten
as the probes can show. The adaptive budget's stop rule, the gate's held-out check and the
compliance re-audit all judge by this one rule.
"""

from __future__ import annotations


def probes_separate(before: float, floor: float, margin: float) -> bool:
    """True when the probes scored more than `margin` above the never-trained `floor` before
    unlearning: only then can they show that something was forgotten."""
    return before > floor + margin


def at_never_trained_floor(before: float | None, now: float | None, floor: float | None, margin: float) -> bool:
    """True when `now` is within `margin` of `floor` (what a never-trained model scores on the same
    probes) and `before` was above that: probes that never rose above the floor cannot tell knowing
    from not knowing, so they never pass on it."""
    if before is None or now is None or floor is None:
        return False
    return probes_separate(before, floor, margin) and now <= floor + margin


def blind_at_floor(before: float | None, now: float | None, floor: float | None, margin: float) -> bool:
    """True when the probes were already within `margin` of `floor` before unlearning and still are:
    they show neither forgetting nor knowing (the gate marks that n/a, never a pass)."""
    if before is None or now is None or floor is None:
        return False
    return not probes_separate(before, floor, margin) and now <= floor + margin
