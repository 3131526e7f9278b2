"""The never-trained floor rule, on hand-made scores."""

import pytest

from lethe.evaluate.floor import at_never_trained_floor


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
