"""The never-trained floor rule, on hand-made scores."""

import pytest

from lethe.evaluate.floor import blind_at_floor, forgotten, share_above_floor


@pytest.mark.parametrize(("before", "now", "floor", "expected"), [
    (0.20, 0.05, None, True),     # no never-trained model: the plain ratio (0.25x)
    (0.20, 0.07, None, False),    # 0.35x
    (0.20, 0.09, 0.063, True),    # 0.2x of the 0.137 it scored above the floor is left
    (0.20, 0.11, 0.063, False),   # within 0.05 of the floor, yet 0.34x of what it knew above it is left
    (0.2057, 0.1286, 0.0788, False),  # SimNPO's noisy dip (s31): 0.0002 inside the old absolute rule, 0.39x left
    (0.20, 0.02, 0.063, True),    # under the floor
    (0.15, 0.04, 0.12, True),     # the probes never separated, but the plain ratio holds (0.27x)
    (0.15, 0.13, 0.12, False),    # the probes never separated: the share above the floor does not count
    (None, 0.10, 0.063, False),   # nothing measured before
    (0.20, None, 0.063, False),   # nothing measured now
    (0.0, 0.0, 0.063, True),      # nothing before, nothing now
])
def test_forgotten_counts_the_recall_above_the_never_trained_floor(before, now, floor, expected):
    assert forgotten(before, now, floor, 0.05, 0.3) is expected


def test_share_above_floor():
    assert share_above_floor(0.3, 0.1, 0.1) == 0.0
    assert share_above_floor(0.3, 0.2, 0.1) == pytest.approx(0.5)
    assert share_above_floor(0.3, 0.05, 0.1) == pytest.approx(-0.25)


@pytest.mark.parametrize(("before", "now", "floor", "expected"), [
    (0.15, 0.14, 0.12, True),     # within the margin before and after: the probes cannot tell
    (0.15, 0.30, 0.12, False),    # rose above the floor + margin: the ratio judges it
    (0.20, 0.10, 0.063, False),   # the probes separated before: not blind
    (0.15, 0.14, None, False),    # no never-trained model
])
def test_blind_only_when_the_probes_never_left_the_floor(before, now, floor, expected):
    assert blind_at_floor(before, now, floor, 0.05) is expected
