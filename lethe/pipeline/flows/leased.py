"""How a flow runs one queued request: skip it when it is done, claim its lease or leave it to the
runner that holds it, renew the lease (and the model lock) while working, hold the model's Prefect
concurrency slot (lethe.pipeline.flows.model_slot) under that lock, and end it in the queue:
completed, rejected, or failed (resumable) on any exception, a SIGTERM or Ctrl-C included.

unlearn_request (weights, MAGE), agentic_unlearn (weights and memory, SBU) and unlearn_batch share it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from prefect.runtime import flow_run

from lethe.errors import LetheError
from lethe.ops.failures import explain
from lethe.ops.queue import (
    CANCELLED,
    COMPLETED,
    DEFAULT_LEASE_SECONDS,
    FAILED,
    REJECTED,
    SUPERSEDED,
    RequestQueue,
    RequestRecord,
    runner_id,
)
from lethe.pipeline.flows.model_slot import model_slot

FINAL = (COMPLETED, REJECTED, SUPERSEDED, CANCELLED)


def flow_owner() -> str:
    """Who holds a lease: this process's runner id and the Prefect flow run it belongs to."""
    return f"{runner_id()}:{flow_run.get_id() or 'local'}"


def queued_request(queue: RequestQueue, request_id: str, kind: str) -> RequestRecord:
    """The queued request a flow was given, refused when it is of another kind than the flow runs."""
    record = queue.get(request_id)
    if record.kind != kind:
        raise LetheError(f"request {request_id} is an {record.kind} request; this flow runs {kind} requests")
    return record


class Heartbeat:
    """Renews the request's lease (and the model lock) in a background thread while the flow works."""

    def __init__(self, queue: RequestQueue, request_id: str, owner: str, lock: str,
                 seconds: float = DEFAULT_LEASE_SECONDS):
        self.queue, self.request_id, self.owner, self.lock, self.seconds = queue, request_id, owner, lock, seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name=f"lease-{request_id}")

    def _beat(self) -> None:
        while not self._stop.wait(self.seconds / 4):
            self.queue.heartbeat(self.request_id, self.owner, self.seconds)
            self.queue.renew_lock(self.lock, self.owner, self.seconds)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def claim_or_skip(queue: RequestQueue, record: RequestRecord, owner: str) -> dict[str, Any] | None:
    """None when `owner` now holds the request; else the result to return without running it (its
    stored result when it is done, `running_elsewhere` when another live runner holds its lease)."""
    if record.status in FINAL:
        queue.audit("rerun_skipped", record.id, detail={"status": record.status})
        return {**(record.result or {}), "status": record.status, "request_id": record.id, "reused": True}
    if queue.claim(record.id, owner) is None:
        holder = queue.get(record.id)
        queue.audit("claim_refused", record.id, actor=owner, detail={"lease_owner": holder.lease_owner})
        return {"request_id": record.id, "status": "running_elsewhere", "lease_owner": holder.lease_owner,
                "reused": True}
    return None


def fail_resumable(queue: RequestQueue, request_id: str, owner: str, exc: BaseException) -> None:
    """End a request `failed` with its error: running it again resumes it."""
    queue.transition(request_id, FAILED, actor=owner, detail={"error": f"{type(exc).__name__}: {exc}"[:1000]},
                     result={"request_id": request_id, "status": FAILED, "error": explain(exc)})


def final_status(result: dict[str, Any]) -> str:
    """The queue status a finished run's result ends its request in."""
    return COMPLETED if result["status"] in (COMPLETED, "nothing_memorized") else REJECTED


def run_leased(queue: RequestQueue, record: RequestRecord, owner: str, lock: str,
               work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run `work` for a queued request under its lease and the model `lock`; store its result and end
    the request completed (`status` completed or nothing_memorized) or rejected."""
    skipped = claim_or_skip(queue, record, owner)
    if skipped is not None:
        return skipped
    try:
        with Heartbeat(queue, record.id, owner, lock):
            queue.acquire_lock(lock, owner)
            try:
                with model_slot(lock, lambda stale: queue.audit("model_slot_reclaimed", record.id, actor=owner,
                                                                detail={"limit": lock, "stale_slots": stale})):
                    result = work()
            finally:
                queue.release_lock(lock, owner)
    except BaseException as exc:  # a SIGTERM (SystemExit) or Ctrl-C ends the request resumable too
        fail_resumable(queue, record.id, owner, exc)
        raise
    queue.transition(record.id, final_status(result), actor=owner, result=result,
                     detail={"outcome": result["status"]})
    return result
