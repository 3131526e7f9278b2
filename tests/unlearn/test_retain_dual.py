"""The retain term's dual multiplier: grows with the utility proxy's shortfall, relaxes back, stays in bounds."""

import math

import pytest

from lethe.unlearn.retain_dual import retain_multiplier


def _path(*ratios):
    return [{"step": 0, "dev_rouge": 0.8}, *({"step": 10 * (i + 1), "utility_ratio": r} for i, r in enumerate(ratios))]


def test_a_shortfall_raises_the_multiplier_by_the_exponentiated_gap():
    assert retain_multiplier(_path(0.85), 0.95, 5.0, 8.0) == pytest.approx(math.exp(0.5))
    assert retain_multiplier(_path(0.85, 0.85), 0.95, 5.0, 8.0) == pytest.approx(math.exp(1.0))


def test_the_multiplier_relaxes_toward_one_once_the_proxy_recovers_and_never_falls_below_it():
    assert retain_multiplier(_path(0.85, 1.0), 0.95, 5.0, 8.0) == pytest.approx(math.exp(0.5 - 0.25))
    assert retain_multiplier(_path(1.0, 1.0, 0.96), 0.95, 5.0, 8.0) == 1.0  # never below the configured weight


def test_the_multiplier_is_capped_and_off_at_rate_zero():
    assert retain_multiplier(_path(0.2, 0.2, 0.2), 0.95, 5.0, 8.0) == 8.0
    assert retain_multiplier(_path(0.2, 0.2), 0.95, 0.0, 8.0) == 1.0
    assert retain_multiplier(_path(), 0.95, 5.0, 8.0) == 1.0  # the step-0 point alone has no ratio
