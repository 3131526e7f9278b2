"""The agent's re-audit, its logic on hand-made inputs: which requests it covers, its verdict, and the
starting point of an agentic request (the run on real servers is tests/pipeline/test_agentic_unlearn.py)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from lethe.ops import agentic_audit, agentic_steps, compliance
from lethe.ops.queue import AGENTIC, COMPLETED, FAILED, REJECTED, RUNNING, RequestQueue


def _finish(queue: RequestQueue, record, status: str, version: str | None = "1") -> None:
    queue.transition(record.id, RUNNING)
    queue.transition(record.id, status, result={"model_version": version} if version else {})


@pytest.fixture
def queue(tmp_path) -> RequestQueue:
    return RequestQueue(f"sqlite:///{tmp_path / 'queue.db'}")


def test_the_agent_audit_covers_agentic_requests_that_replaced_the_memory(queue, tmp_path):
    model, other = tmp_path / "model", tmp_path / "other"
    model.mkdir(), other.mkdir()
    memory = str(tmp_path / "memory.db")
    done, _ = queue.add("Ada", str(model), "t", "r", kind=AGENTIC, memory=memory)
    rejected, _ = queue.add("Bob", str(model), "t", "r", kind=AGENTIC, memory=memory)
    failed, _ = queue.add("Cy", str(model), "t", "r", kind=AGENTIC, memory=memory)
    elsewhere, _ = queue.add("Dee", str(other), "t", "r", kind=AGENTIC, memory=memory)
    weights, _ = queue.add("Eve", str(model), "t", "r")
    no_version, _ = queue.add("Fay", str(model), "t", "r", kind=AGENTIC, memory=memory)
    pending, _ = queue.add("Gus", str(model), "t", "r", kind=AGENTIC, memory=memory)
    _finish(queue, done, COMPLETED)
    _finish(queue, rejected, REJECTED, "2")
    _finish(queue, failed, FAILED)
    _finish(queue, elsewhere, COMPLETED)
    _finish(queue, weights, COMPLETED)
    _finish(queue, no_version, REJECTED, None)  # rejected before anything was registered (data quality)
    assert pending.status == "pending"
    covered = agentic_audit.agentic_records(queue, model)
    assert [(r.anchor, r.status) for r in covered] == [("Ada", COMPLETED), ("Bob", REJECTED)]
    # ...and the weights audit never takes an agentic request for one of its own.
    rows = compliance.audited_entities([], model, queue)
    assert [row["anchor"] for row in rows] == ["Eve"]


def _row(status: str, in_chain: bool, forgotten: bool) -> dict:
    return {"anchor": "a", "request_id": "r", "status": status, "in_champion_chain": in_chain, "forgotten": forgotten}


@pytest.mark.parametrize("rows, expected", [
    ([_row(COMPLETED, True, True), _row(REJECTED, False, True)], True),
    ([_row(COMPLETED, True, True), _row(REJECTED, False, False)], False),  # leaks again
    ([_row(COMPLETED, False, True)], False),  # its adapter is no longer served (a rollback)
    ([], True),
])
def test_every_entity_must_still_be_forgotten(rows, expected):
    plan = agentic_audit.AgenticAuditPlan("m", "3", "base", "base", (), ())
    assert agentic_audit.summarize(plan, rows)["all_forgotten"] is expected


def test_a_missing_live_memory_is_a_failed_row_not_a_pass(tmp_path):
    params = SimpleNamespace(agent=SimpleNamespace(), registry=SimpleNamespace(workdir=str(tmp_path)))
    plan = agentic_audit.AgenticAuditPlan("m", None, "base", "base", ("r",), ())
    entity = {"anchor": "Ada", "request_id": "r", "status": COMPLETED, "version": "1",
              "memory": str(tmp_path / "gone.db")}
    row = agentic_audit.audit_agentic_entity(params, plan, entity)
    assert row["forgotten"] is False and row["retrieval_leak"] is None and "missing" in row["note"]


def _version(number: str, request_id: str, parent: str, chain: list[str]) -> SimpleNamespace:
    import json

    return SimpleNamespace(version=number, tags={"lineage.request_id": request_id, "lineage.parent_version": parent,
                                                 "lineage.adapter_chain": json.dumps(chain)})


@pytest.mark.parametrize("champion, request_id, expected", [
    (None, "new", (None, [])),
    (_version("2", "old", "1", ["a1", "a2"]), "new", ("2", ["a1", "a2"])),
    # A resumed request whose own version is already champion starts where it started before.
    (_version("2", "mine", "1", ["a1", "a2"]), "mine", ("1", ["a1"])),
    (_version("1", "mine", "none", ["a1"]), "mine", (None, [])),
])
def test_an_agentic_request_starts_from_the_agentic_champion(monkeypatch, champion, request_id, expected):
    monkeypatch.setattr(agentic_steps.registry, "alias_version", lambda client, name, alias: champion)
    assert agentic_steps.starting_point(object(), "lethe-agentic-m", request_id) == expected


def test_plan_model_path_is_the_starting_model():
    plan = agentic_steps.AgenticPlan("r", "Ada", "/base", "/mem", "m", "/w", "uri", "run")
    assert plan.model_path == "/base"
    chained = agentic_steps.AgenticPlan("r", "Ada", "/base", "/mem", "m", "/w", "uri", "run", None,
                                        str(Path("/composed/model")), "2", ["a1"])
    assert chained.model_path == "/composed/model"
