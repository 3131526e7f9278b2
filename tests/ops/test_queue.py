"""Request queue: status transitions, duplicate submissions, the append-only ledger."""

import os

import pytest
import sqlalchemy as sa

from lethe.errors import LetheError
from lethe.ops.queue import COMPLETED, FAILED, PENDING, REJECTED, RUNNING, RequestQueue, died_here


@pytest.fixture
def queue(tmp_path):
    return RequestQueue(f"sqlite:///{tmp_path / 'queue.db'}")


def test_lifecycle_and_audit(queue):
    record, created = queue.add("Basil Mahfouz Al-Kuwaiti", "m", "alice", "GDPR art. 17", "a writer")
    assert created and record.status == PENDING and record.description == "a writer"
    queue.transition(record.id, RUNNING)
    queue.transition(record.id, FAILED, detail={"error": "server down"})
    again = queue.transition(record.id, RUNNING)
    assert again.attempts == 2
    done = queue.transition(record.id, COMPLETED, result={"model_version": "1"})
    assert done.result == {"model_version": "1"}
    assert done.description is None and done.description_sha256  # only the digest is kept
    events = [e["event"] for e in queue.audit_log(record.id)]
    assert events == ["submitted", "status:running", "status:failed", "status:running", "status:completed"]


def test_illegal_transitions_are_refused(queue):
    record, _ = queue.add("X Y", "m", "alice", "why")
    with pytest.raises(LetheError, match="cannot become completed"):
        queue.transition(record.id, COMPLETED)
    queue.transition(record.id, RUNNING)
    queue.transition(record.id, REJECTED)
    with pytest.raises(LetheError, match="cannot become running"):
        queue.transition(record.id, RUNNING)
    with pytest.raises(LetheError, match="no request"):
        queue.get("req-nope")


def test_duplicate_submission_joins_the_existing_request(queue):
    first, created = queue.add("Basil  Mahfouz al-kuwaiti", "m", "alice", "why")
    second, created_again = queue.add("basil mahfouz Al-Kuwaiti", "m", "bob", "again")
    assert created and not created_again and second.id == first.id
    other_model, created_other = queue.add("Basil Mahfouz Al-Kuwaiti", "other-model", "bob", "why")
    assert created_other and other_model.id != first.id
    assert "duplicate_submission" in [e["event"] for e in queue.audit_log(first.id)]


def test_rejected_request_can_be_submitted_again(queue):
    first, _ = queue.add("A B", "m", "alice", "why")
    queue.transition(first.id, RUNNING)
    queue.transition(first.id, REJECTED)
    second, created = queue.add("A B", "m", "alice", "retry with new thresholds")
    assert created and second.id != first.id


def test_audit_ledger_is_append_only(queue):
    record, _ = queue.add("A B", "m", "alice", "why")
    with queue.engine.begin() as conn, pytest.raises(sa.exc.DatabaseError, match="append-only"):
        conn.exec_driver_sql("UPDATE audit SET event = 'forged'")
    with queue.engine.begin() as conn, pytest.raises(sa.exc.DatabaseError, match="append-only"):
        conn.exec_driver_sql("DELETE FROM audit")
    assert len(queue.audit_log(record.id)) == 1


def test_requester_and_reason_are_required(queue):
    with pytest.raises(LetheError, match="requester and a reason"):
        queue.add("A B", "m", " ", "why")


def test_normalized_anchor_is_one_request(queue):
    first, _ = queue.add("Nikolai Abilov", "m", "alice", "why")
    for variant in ("Nikolai Abilov.", "  nikolai   ABILOV ", "Ｎｉｋｏｌａｉ Abilov", '"Nikolai Abilov"'):
        again, created = queue.add(variant, "m", "bob", "again")
        assert not created and again.id == first.id, variant


def test_concurrent_submissions_of_one_anchor_make_one_request(queue):
    from concurrent.futures import ThreadPoolExecutor

    def submit(i: int):
        return queue.add("Jaime Vasquez", "m", f"user{i}", "race")

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(submit, range(16)))
    assert len({record.id for record, _ in results}) == 1
    assert sum(created for _, created in results) == 1


def test_a_lease_admits_one_runner_and_expires_for_a_dead_one(queue):
    record, _ = queue.add("A B", "m", "alice", "why")
    assert queue.claim(record.id, "worker-1", seconds=60).status == RUNNING
    assert queue.claim(record.id, "worker-2", seconds=60) is None  # held: the second runner skips it
    assert queue.heartbeat(record.id, "worker-1", seconds=0.01)
    import time

    time.sleep(0.05)  # worker-1 died: its lease ran out
    taken = queue.claim(record.id, "worker-2", seconds=60)
    assert taken is not None and taken.lease_owner == "worker-2" and taken.attempts == 2
    assert not queue.heartbeat(record.id, "worker-1")  # the dead runner cannot renew what it lost
    assert "lease_taken_over" in [e["event"] for e in queue.audit_log(record.id)]
    done = queue.transition(record.id, COMPLETED, actor="worker-2")
    assert done.lease_owner is None


def test_a_runner_of_this_host_that_died_is_taken_over_at_once(queue):
    import socket
    import subprocess

    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid that existed and is no more
    dead, alive = f"{socket.gethostname()}:{gone.pid}:local", f"{socket.gethostname()}:{os.getpid()}:local"
    record, _ = queue.add("C D", "m", "alice", "why")
    assert queue.claim(record.id, alive, seconds=600) is not None
    assert queue.claim(record.id, "someone", seconds=600) is None  # a live local runner keeps it
    queue.transition(record.id, "failed", actor=alive)
    assert queue.claim(record.id, dead, seconds=600) is not None
    taken = queue.claim(record.id, "worker-2", seconds=600)  # long before the lease's expiry
    assert taken is not None and taken.lease_owner == "worker-2"
    assert not died_here("other-host:12345:local") and not died_here(None) and not died_here("junk")
    queue.acquire_lock("model:m", dead, seconds=600)
    queue.acquire_lock("model:m", "worker-2", seconds=600, wait=0.5, poll=0.1)  # no wait for the expiry


def test_model_lock_is_exclusive_and_expires(queue):
    from lethe.errors import LetheError

    queue.acquire_lock("model:m", "a", seconds=60)
    queue.acquire_lock("model:m", "a", seconds=60)  # re-entrant for its holder
    with pytest.raises(LetheError, match="held by another runner"):
        queue.acquire_lock("model:m", "b", seconds=60, wait=0.2, poll=0.05)
    queue.release_lock("model:m", "a")
    queue.acquire_lock("model:m", "b", seconds=0.01)
    import time

    time.sleep(0.05)
    queue.acquire_lock("model:m", "c", seconds=60, wait=0.5, poll=0.05)  # b crashed: its lock expired


def test_rollback_states_and_cancel(queue):
    from lethe.ops.queue import CANCELLED, SUPERSEDED

    record, _ = queue.add("A B", "m", "alice", "why")
    queue.claim(record.id, "w")
    queue.transition(record.id, COMPLETED)
    queue.transition(record.id, SUPERSEDED)
    again, created = queue.add("A B", "m", "alice", "re-queued after rollback")
    assert created and again.id != record.id  # a superseded request no longer blocks a new one
    assert queue.transition(again.id, CANCELLED).status == CANCELLED
    with pytest.raises(LetheError, match="cannot become running"):
        queue.transition(again.id, RUNNING)


def test_gate_verdict_comes_from_the_ledger(queue):
    queue.audit("gate_decision", "req-1", detail={"status": "rejected", "model": "m", "model_version": "3"})
    assert queue.gate_verdict("m", "3") == "rejected" and queue.gate_verdict("m", "4") is None


def test_a_queue_from_an_earlier_version_is_migrated(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE requests (id VARCHAR(40) PRIMARY KEY, anchor VARCHAR(200) NOT NULL, "
                             "anchor_key VARCHAR(200) NOT NULL, model VARCHAR(200) NOT NULL, description VARCHAR(400), "
                             "description_sha256 VARCHAR(64), requester VARCHAR(200) NOT NULL, reason VARCHAR(400) "
                             "NOT NULL, status VARCHAR(20) NOT NULL, created_at VARCHAR(40) NOT NULL, updated_at "
                             "VARCHAR(40) NOT NULL, attempts INTEGER NOT NULL, result TEXT)")
        conn.exec_driver_sql("CREATE UNIQUE INDEX uq_active_request ON requests (anchor_key, model) "
                             "WHERE status IN ('pending', 'running', 'failed', 'completed')")
        conn.exec_driver_sql("INSERT INTO requests VALUES ('req-old', 'A B', 'a b', 'm', NULL, NULL, 'alice', 'why', "
                             "'completed', '2026-01-01', '2026-01-01', 1, NULL)")
    queue = RequestQueue(url)
    old = queue.get("req-old")
    assert old.kind == "unlearn" and old.lease_owner is None  # an earlier request was a weights request
    record, created = queue.add("A B", "m", "alice", "why", kind="agentic", memory="agent.db")  # old index: refused
    assert created and record.kind == "agentic" and record.lease_owner is None
    assert queue.add("A B", "m", "bob", "again")[0].id == "req-old"
    assert RequestQueue(url).get(record.id).kind == "agentic"  # migrating twice is a no-op


def test_an_agentic_request_is_its_own_request(queue):
    """The same anchor on the same model, forgotten in the weights and in an agent: two requests, each
    joined by its own duplicates; an unknown kind is refused."""
    weights, _ = queue.add("Nikolai Abilov", "m", "alice", "why")
    agentic, created = queue.add("Nikolai Abilov", "m", "alice", "why", kind="agentic", memory="/a/agent.db")
    assert created and agentic.id != weights.id and (weights.kind, agentic.kind) == ("unlearn", "agentic")
    assert (weights.memory, agentic.memory) == (None, "/a/agent.db")
    assert queue.add("nikolai abilov.", "m", "bob", "again", kind="agentic", memory="/a/agent.db")[0].id == agentic.id
    with pytest.raises(LetheError, match="unknown request kind"):
        queue.add("Nikolai Abilov", "m", "alice", "why", kind="memory")
    with pytest.raises(LetheError, match="names the agent's memory"):
        queue.add("Jaime Vasquez", "m", "alice", "why", kind="agentic")
    with pytest.raises(LetheError, match="names the agent's memory"):
        queue.add("Jaime Vasquez", "m", "alice", "why", memory="/a/agent.db")
