"""SBU's gate as a decision table, like every other request's."""

from lethe.ops.agentic_steps import agentic_decision
from lethe.ops.gate import decision_markdown


def report(retrieval: float, generation: float, ratio: float | None) -> dict:
    return {"leak_rates": {"sbu": {"retrieval": retrieval, "generation": generation}}, "retain_quality_ratio": ratio}


def test_every_check_is_a_row_and_a_failure_names_its_check(params):
    bounds = params.agent
    passing = agentic_decision(params, report(0.0, 0.0, 1.0))
    assert passing.passed and [c.name for c in passing.checks] == ["retrieval_leak", "generation_leak", "retain_quality"]
    failing = agentic_decision(params, report(bounds.retrieval_leak_bound + 0.1, 0.0, 0.5))
    assert not failing.passed
    assert [r.split(":")[0] for r in failing.reasons] == ["retrieval_leak", "retain_quality"]
    assert "| retrieval_leak |" in decision_markdown(failing) and "**Gate: rejected**" in decision_markdown(failing)


def test_unmeasured_retain_quality_is_marked_not_applicable():
    from lethe.config import load_params

    decision = agentic_decision(load_params(), report(0.0, 0.0, None))
    assert decision.passed and decision.checks[-1].passed is None
    assert "| retain_quality | None |" in decision_markdown(decision) and "n/a" in decision_markdown(decision)
