"""The never-trained floor: how much of what an entity's probes showed has gone, counted above what a
model that never knew the entity scores on them.

Such a model still scores above zero on an entity's probes (its answers share their generic words),
so a plain ratio target can sit below that floor and be unreachable. Only the recall above the floor
is knowledge: the rule asks that share to fall to the same ratio. An absolute margin around the
floor would not do: where the probes separated by little, noise alone would carry a score into it.
The adaptive budget's stop rule, the gate's held-out check and the compliance re-audit all judge by
this one rule, and by one re-elicitation bound (`reelicit_limit`); the gate and the re-audit by one
probe-count floor (`too_few_probes`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lethe.config import GateParams


def probes_separate(before: float, floor: float, margin: float) -> bool:
    """True when the probes scored more than `margin` above the never-trained `floor` before
    unlearning: only then can they show that something was forgotten."""
    return before > floor + margin


def share_above_floor(before: float, now: float, floor: float) -> float:
    """(now - floor) / (before - floor): the share of the recall beyond a never-trained model's that is
    left (0 at the floor, below 0 under it). `before` must be above `floor`."""
    return (now - floor) / (before - floor)


def forgotten(before: float | None, now: float | None, floor: float | None, margin: float,
              max_ratio: float) -> bool:
    """True when `now` <= max_ratio x `before`, or, where a never-trained model scored `floor` and the
    probes separated from it before (by more than `margin`), when the recall above the floor fell to
    <= max_ratio x what it was. (The plain ratio implies the second whenever floor >= 0; the second is
    what a real forgetting can meet when max_ratio x before is below the floor.)"""
    if before is None or now is None:
        return False
    if now <= max_ratio * before:
        return True
    return (floor is not None and probes_separate(before, floor, margin)
            and share_above_floor(before, now, floor) <= max_ratio)


def blind_at_floor(before: float | None, now: float | None, floor: float | None, margin: float) -> bool:
    """True when the probes were already within `margin` of `floor` before unlearning and still are:
    they show neither forgetting nor knowing (the gate marks that n/a, never a pass)."""
    if before is None or now is None or floor is None:
        return False
    return not probes_separate(before, floor, margin) and now <= floor + margin


def reelicit_limit(reference_return: float | None, gate: GateParams) -> float:
    """The most of the strong memories that may come back when the entity is elicited again: the
    never-trained reference's share plus gate.max_reelicit_excess, or gate.max_reelicit_return without one."""
    if reference_return is None:
        return gate.max_reelicit_return
    return reference_return + gate.max_reelicit_excess


def too_few_probes(count: int | None, gate: GateParams) -> bool:
    """True when a held-out verdict would rest on fewer than gate.min_heldout_probes probes: it then fails,
    however well they read. An uncounted audit (`None`, from before the count was recorded) is not judged."""
    return count is not None and count < gate.min_heldout_probes
