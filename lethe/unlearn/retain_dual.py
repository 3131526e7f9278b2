"""The retain term's weight by dual ascent: the utility proxy as a constraint the training answers to.

The adaptive budget scores a utility proxy every `eval_every` steps, and until now only read it to
choose where to stop: a run whose proxy fell below `stop_utility_ratio` early (Hina Ameen's thorough
request at training seed 2, stop 55: 0.91x from step 40 on) trained on with the same balance of
forget and retain terms to the step cap, and lost another author (0.63x). Here the proxy's shortfall
feeds back: after each budget point the retain term's multiplier grows by exp(rate x shortfall), and
shrinks back toward 1 while the proxy sits above the target, within [1, cap]. This is the multiplier
of a Lagrangian whose constraint is "utility proxy >= stop_utility_ratio", updated by exponentiated
dual ascent. It is a function of the budget's path alone, so a resumed run recomputes it.

Measured at rate 10 (stop 56, docs/forgetting-measurements.md), it does not keep the other authors: the
24-row proxy rarely scores the author the gate fails, and the heavier retain term undoes forgetting. It
stays off by default, as that measurement.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def retain_multiplier(path: Sequence[dict], target: float, rate: float, cap: float) -> float:
    """The retain term's multiplier after the budget points of `path` (its step-0 point, which has no
    utility ratio, is skipped): starting at 1, each point multiplies it by exp(rate x (target -
    utility_ratio)), clipped to [1, cap] after every point. 1 when `rate` is 0."""
    multiplier = 1.0
    if rate <= 0:
        return multiplier
    for point in path:
        if "utility_ratio" in point:
            multiplier = min(cap, max(1.0, multiplier * math.exp(rate * (target - point["utility_ratio"]))))
    return multiplier
