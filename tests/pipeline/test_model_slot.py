"""The model's Prefect global concurrency limit (lethe.pipeline.flows.model_slot), on a real Prefect
test server: held while a request works, a stale slot reclaimed, nothing outside a flow run."""

from __future__ import annotations

import uuid

import pytest
from prefect import flow

from lethe.ops.queue import COMPLETED, RequestQueue
from lethe.pipeline.flows.leased import run_leased
from lethe.pipeline.flows.model_slot import model_slot


def _limit(name: str):
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            return client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            return None


@pytest.fixture
def name() -> str:
    return f"model:lethe-test-{uuid.uuid4().hex[:8]}"


def test_a_request_holds_the_models_one_slot_while_it_works(prefect_harness, tmp_path, name):
    queue = RequestQueue(f"sqlite:///{tmp_path / 'queue.db'}")
    record = queue.add("Bo Li", "m", "alice", "why")[0]
    seen = {}

    def work() -> dict:
        limit = _limit(name)
        seen.update(limit=limit.limit, active_slots=limit.active_slots)
        return {"status": COMPLETED}

    @flow
    def one_request() -> dict:
        return run_leased(queue, record, "runner-1", name, work)

    assert one_request()["status"] == COMPLETED
    assert seen == {"limit": 1, "active_slots": 1}  # the slot was taken while the request worked
    assert _limit(name).active_slots == 0  # and given back after
    assert "model_slot_reclaimed" not in [e["event"] for e in queue.audit_log(record.id)]


def test_a_slot_a_killed_runner_left_is_reclaimed(prefect_harness, name):
    """A runner SIGKILLed while holding the slot never releases it; the next holder (who holds the
    model's queue lock, so the slot must be stale) takes the model anyway, and says so."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
        client.increment_concurrency_slots_with_lease([name], 1, "concurrency", lease_duration=3600)
    assert _limit(name).active_slots == 1
    reclaimed, held = [], {}

    @flow
    def next_runner() -> None:
        with model_slot(name, reclaimed.append, wait_seconds=10) as holding:
            held.update(holding=holding, active_slots=_limit(name).active_slots)

    next_runner()
    assert reclaimed == [1] and held == {"holding": True, "active_slots": 1}
    assert _limit(name).active_slots == 0


def test_outside_a_flow_run_only_the_queue_lock_applies(prefect_harness, name):
    with model_slot(name) as holding:
        assert holding is False
    assert _limit(name) is None
