"""Running one queued request under its lease (lethe.pipeline.flows.leased), on a real SQLite queue."""

from __future__ import annotations

import pytest

from lethe.ops.queue import COMPLETED, FAILED, REJECTED, RequestQueue
from lethe.pipeline.flows.leased import run_leased


@pytest.fixture
def queue(tmp_path):
    return RequestQueue(f"sqlite:///{tmp_path / 'queue.db'}")


def _add(queue: RequestQueue, anchor: str = "Bo Li"):
    return queue.add(anchor, "m", "alice", "why")[0]


def test_a_run_ends_its_request_and_stores_its_result(queue):
    record = _add(queue)
    result = run_leased(queue, record, "runner-1", "model:m", lambda: {"status": COMPLETED, "x": 1})
    done = queue.get(record.id)
    assert result["x"] == 1 and done.status == COMPLETED and done.result["x"] == 1 and done.lease_owner is None
    again = run_leased(queue, done, "runner-2", "model:m", lambda: pytest.fail("a finished request ran again"))
    assert again["reused"] is True and again["x"] == 1
    assert [e["event"] for e in queue.audit_log(record.id)][-1] == "rerun_skipped"


def test_a_rejected_outcome_ends_rejected(queue):
    record = _add(queue)
    run_leased(queue, record, "runner-1", "model:m", lambda: {"status": REJECTED})
    assert queue.get(record.id).status == REJECTED


def test_a_crash_ends_failed_and_resumable_and_frees_the_model_lock(queue):
    record = _add(queue)

    def crash() -> dict:
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        run_leased(queue, record, "runner-1", "model:m", crash)
    failed = queue.get(record.id)
    assert failed.status == FAILED and "disk on fire" in failed.result["error"]
    queue.acquire_lock("model:m", "runner-2", wait=0.0)  # the crashed runner's lock is gone
    queue.release_lock("model:m", "runner-2")
    resumed = run_leased(queue, failed, "runner-2", "model:m", lambda: {"status": COMPLETED})
    assert resumed["status"] == COMPLETED and queue.get(record.id).attempts == 2


def test_a_request_leased_by_a_live_runner_is_left_to_it(queue):
    record = _add(queue)
    assert queue.claim(record.id, "runner-1") is not None
    skipped = run_leased(queue, record, "runner-2", "model:m", lambda: pytest.fail("ran under another's lease"))
    assert skipped["status"] == "running_elsewhere" and skipped["lease_owner"] == "runner-1"
