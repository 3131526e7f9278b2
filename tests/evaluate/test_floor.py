"""The never-trained floor rule, on hand-made scores."""

import pytest

from lethe.evaluate.floor import at_never_trained_floor, blind_at_floor


@pytest.mark.parametrize(("before", "now", "floor", "expected"), [
    (0.20, 0.10, 0.063, True),    # within 0.05 of the floor, having been well above it
    (0.20, 0.12, 0.063, False),   # still 0.057 above the floor
    (0.15, 0.04, 0.12, False),    # before was already within the margin: the probes cannot tell
    (0.20, 0.10, None, False),    # no never-trained model: no floor to be at
    (None, 0.10, 0.063, False),   # nothing measured before
    (0.20, None, 0.063, False),   # nothing measured now
])
def test_at_the_floor_only_after_having_been_above_it(before, now, floor, expected):
    assert at_never_trained_floor(before, now, floor, 0.05) is expected


@pytest.mark.parametrize(("before", "now", "floor", "expected"), [
    (0.15, 0.14, 0.12, True),     # within the margin before and after: the probes cannot tell
    (0.15, 0.30, 0.12, False),    # rose above the floor + margin: the ratio judges it
    (0.20, 0.10, 0.063, False),   # the probes separated before: not blind
    (0.15, 0.14, None, False),    # no never-trained model
])
def test_blind_only_when_the_probes_never_left_the_floor(before, now, floor, expected):
    assert blind_at_floor(before, now, floor, 0.05) is expected
