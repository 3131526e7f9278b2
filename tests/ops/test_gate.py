"""The gate is a pure function: each check on hand-made metrics."""

import pytest

from lethe.config import GateParams
from lethe.ops.gate import REQUIRED_LINEAGE, decide, decision_table

GATE = GateParams(max_forget_ratio=0.5, min_utility_ratio=0.9, min_forget_quality=0.0,
                  require_data_quality=True, auto_promote=True)
LINEAGE = {key: "x" for key in REQUIRED_LINEAGE}
BEFORE = {"forget_Q_A_ROUGE": 0.9, "model_utility": 0.8, "forget_quality": 1e-5}


def test_passes_when_forgetting_and_utility_are_within_bounds():
    after = {"forget_Q_A_ROUGE": 0.3, "model_utility": 0.78, "forget_quality": 1e-3}
    decision = decide(BEFORE, after, 0.8, True, LINEAGE, GATE)
    assert decision.passed and decision.reasons == []
    assert {row["check"]: row["result"] for row in decision_table(decision)} == {
        "forget_efficacy": "pass", "forget_quality": "pass", "utility": "pass", "data_quality": "pass",
        "lineage": "pass"}


@pytest.mark.parametrize("after, failing", [
    ({"forget_Q_A_ROUGE": 0.5, "model_utility": 0.8, "forget_quality": 1e-3}, "forget_efficacy"),  # 0.56x
    ({"forget_Q_A_ROUGE": 0.1, "model_utility": 0.7, "forget_quality": 1e-3}, "utility"),  # 0.875x
    ({"forget_Q_A_ROUGE": 0.1, "model_utility": 0.8, "forget_quality": 1e-6}, "forget_quality"),  # got worse
])
def test_each_threshold_rejects(after, failing):
    decision = decide(BEFORE, after, 0.8, True, LINEAGE, GATE)
    assert not decision.passed
    assert [r.split(":")[0] for r in decision.reasons] == [failing]


def test_utility_is_judged_against_the_original_base_model():
    # the champion already lost some utility; the new version must stay >= 0.9x the ORIGINAL base
    after = {"forget_Q_A_ROUGE": 0.1, "model_utility": 0.70, "forget_quality": 1e-3}
    before = {**BEFORE, "model_utility": 0.75}
    assert not decide(before, after, 0.8, True, LINEAGE, GATE).passed
    assert decide(before, after, 0.75, True, LINEAGE, GATE).passed


def test_data_quality_and_lineage_are_required():
    after = {"forget_Q_A_ROUGE": 0.1, "model_utility": 0.8, "forget_quality": 1e-3}
    decision = decide(BEFORE, after, 0.8, False, {**LINEAGE, "git_commit": ""}, GATE)
    assert [r.split(":")[0] for r in decision.reasons] == ["data_quality", "lineage"]
    assert "git_commit" in decision.reasons[1]


def test_entities_outside_the_benchmark_use_the_forget_set_recall():
    before = {"forget_set_rouge": 0.8, "model_utility": 0.8}
    after = {"forget_set_rouge": 0.2, "model_utility": 0.8}
    decision = decide(before, after, 0.8, True, LINEAGE, GATE)
    assert decision.passed
    quality = next(c for c in decision.checks if c.name == "forget_quality")
    assert quality.passed is None  # no retain-model reference: not applicable, not failed


def test_impossible_thresholds_reject_everything():
    impossible = GATE.model_copy(update={"max_forget_ratio": 0.0})
    after = {"forget_Q_A_ROUGE": 0.01, "model_utility": 0.8, "forget_quality": 1e-3}
    assert not decide(BEFORE, after, 0.8, True, LINEAGE, impossible).passed
