"""Request queue: status transitions, duplicate submissions, the append-only ledger."""

import pytest
import sqlalchemy as sa

from lethe.errors import LetheError
from lethe.ops.queue import COMPLETED, FAILED, PENDING, REJECTED, RUNNING, RequestQueue


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
