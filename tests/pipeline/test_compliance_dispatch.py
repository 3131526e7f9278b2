"""Which flow a compliance run gives each queued request (logic only: the flows are replaced by
recorders here; tests/pipeline/test_unlearn_batch.py, test_compliance_on_worker.py and
test_agentic_unlearn.py run the real ones)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from lethe.ops.queue import AGENTIC, UNLEARN
from lethe.pipeline.flows import compliance_run


class _State:
    def __init__(self, result):
        self._result = result

    def is_completed(self) -> bool:
        return True

    def result(self, raise_on_failure: bool = True):
        return self._result


@pytest.fixture
def calls(monkeypatch):
    seen: list[tuple] = []

    def unlearn_request(request_id, model, ops, params_path, return_state):
        seen.append(("unlearn_request", request_id))
        return _State({"status": "completed"})

    def unlearn_batch(request_ids, model, ops, params_path, return_state):
        seen.append(("unlearn_batch", tuple(request_ids)))
        return _State([{"status": "completed"} for _ in request_ids])

    def agentic_unlearn(request_id, ops, params_path, return_state):
        seen.append(("agentic_unlearn", request_id))
        return _State({"status": "rejected-by-gate"})

    for name, fn in (("unlearn_request", unlearn_request), ("unlearn_batch", unlearn_batch),
                     ("agentic_unlearn", agentic_unlearn)):
        monkeypatch.setattr(compliance_run, name, fn)
    return seen


def _record(request_id: str, kind: str = UNLEARN, model: str = "m") -> SimpleNamespace:
    return SimpleNamespace(id=request_id, anchor=f"anchor {request_id}", model=model, kind=kind)


def test_agentic_requests_run_alone_and_never_join_a_batch(calls):
    todo = [_record("r1"), _record("a1", AGENTIC), _record("r2"), _record("a2", AGENTIC), _record("r3", model="n")]
    processed = compliance_run.run_requests(todo, {}, None, batch=True)
    assert calls == [("unlearn_batch", ("r1", "r2")), ("agentic_unlearn", "a1"), ("agentic_unlearn", "a2"),
                     ("unlearn_request", "r3")]
    assert [(p["request_id"], p["kind"], p["status"]) for p in processed] == [
        ("r1", UNLEARN, "completed"), ("r2", UNLEARN, "completed"), ("a1", AGENTIC, "rejected-by-gate"),
        ("a2", AGENTIC, "rejected-by-gate"), ("r3", UNLEARN, "completed")]


def test_serial_runs_keep_the_queue_order(calls):
    compliance_run.run_requests([_record("r1"), _record("a1", AGENTIC), _record("r2")], {}, None, batch=False)
    assert calls == [("unlearn_request", "r1"), ("agentic_unlearn", "a1"), ("unlearn_request", "r2")]


def test_agentic_requests_are_not_mined_ahead(monkeypatch, params):
    planned = []
    monkeypatch.setattr(compliance_run.mine_ahead, "plan_mining",
                        lambda params, env, records: planned.extend(records) or ([], []))
    assert compliance_run.mine_queue_ahead([_record("a1", AGENTIC)], None, params, None) == []
    assert planned == []
    compliance_run.mine_queue_ahead([_record("r1"), _record("a1", AGENTIC)], None, params, None)
    assert [r.id for r in planned] == ["r1"]
