"""The request queue and the append-only audit ledger, in one SQL database.

SQLite by default (a file under artifacts/), any SQLAlchemy URL in production (PostgreSQL).
A request moves pending -> running -> completed | rejected | failed; a failed request may run
again (it resumes from its work directory). Every transition, gate decision and alias move is an
audit event; events are only ever inserted (on SQLite a trigger refuses UPDATE and DELETE).

The anchor is the only user-supplied content kept about the entity: the optional description
is used while the request runs and is then replaced by its SHA-256 digest.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from lethe.errors import LetheError

PENDING, RUNNING, COMPLETED, REJECTED, FAILED = "pending", "running", "completed", "rejected-by-gate", "failed"
STATUSES = (PENDING, RUNNING, COMPLETED, REJECTED, FAILED)
TRANSITIONS = {
    PENDING: {RUNNING},
    RUNNING: {COMPLETED, REJECTED, FAILED},
    FAILED: {RUNNING},
    COMPLETED: set(),
    REJECTED: set(),
}
# A second submission of the same anchor for the same model joins the existing request.
JOINABLE = (PENDING, RUNNING, FAILED, COMPLETED)

_meta = sa.MetaData()
requests_table = sa.Table(
    "requests", _meta,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("anchor", sa.String(200), nullable=False),
    sa.Column("anchor_key", sa.String(200), nullable=False, index=True),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("description", sa.String(400)),
    sa.Column("description_sha256", sa.String(64)),
    sa.Column("requester", sa.String(200), nullable=False),
    sa.Column("reason", sa.String(400), nullable=False),
    sa.Column("status", sa.String(20), nullable=False, index=True),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("updated_at", sa.String(40), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("result", sa.Text),
)
audit_table = sa.Table(
    "audit", _meta,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.String(40), nullable=False),
    sa.Column("request_id", sa.String(40), index=True),
    sa.Column("event", sa.String(60), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
)
_APPEND_ONLY = (
    "CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit "
    "BEGIN SELECT RAISE(ABORT, 'the audit ledger is append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit "
    "BEGIN SELECT RAISE(ABORT, 'the audit ledger is append-only'); END",
)


def now() -> str:
    """UTC timestamp, ISO 8601."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def anchor_key(anchor: str) -> str:
    """Case- and spacing-folded anchor: the identity used to join duplicate submissions."""
    return " ".join(anchor.casefold().split())


@dataclass(frozen=True)
class RequestRecord:
    """One row of the queue."""

    id: str
    anchor: str
    model: str
    description: str | None
    description_sha256: str | None
    requester: str
    reason: str
    status: str
    created_at: str
    updated_at: str
    attempts: int
    result: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def _record(row: sa.Row) -> RequestRecord:
    values = dict(row._mapping)
    values.pop("anchor_key")
    values["result"] = json.loads(values["result"]) if values["result"] else None
    return RequestRecord(**values)


class RequestQueue:
    """Durable queue of unlearning requests plus the audit ledger."""

    def __init__(self, url: str):
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////:memory"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.url = url
        self.engine = sa.create_engine(url, future=True)
        _meta.create_all(self.engine)
        if self.engine.dialect.name == "sqlite":
            with self.engine.begin() as conn:
                for statement in _APPEND_ONLY:
                    conn.exec_driver_sql(statement)

    # -- requests ----------------------------------------------------------------------------
    def add(self, anchor: str, model: str, requester: str, reason: str,
            description: str | None = None) -> tuple[RequestRecord, bool]:
        """Queue a request; returns (record, created). A duplicate joins the existing request."""
        if not requester.strip() or not reason.strip():
            raise LetheError("a request needs a requester and a reason (they go into the audit ledger)")
        key = anchor_key(anchor)
        with self.engine.begin() as conn:
            existing = conn.execute(
                sa.select(requests_table).where(requests_table.c.anchor_key == key,
                                                requests_table.c.model == model,
                                                requests_table.c.status.in_(JOINABLE))
                .order_by(requests_table.c.created_at.desc())).first()
            if existing is not None:
                record = _record(existing)
                self._audit(conn, record.id, "duplicate_submission", requester, {"reason": reason})
                return record, False
            stamp = now()
            request_id = f"req-{stamp[:10].replace('-', '')}-{uuid.uuid4().hex[:8]}"
            conn.execute(requests_table.insert().values(
                id=request_id, anchor=anchor, anchor_key=key, model=model, description=description,
                description_sha256=hashlib.sha256(description.encode()).hexdigest() if description else None,
                requester=requester, reason=reason, status=PENDING, created_at=stamp, updated_at=stamp,
                attempts=0, result=None))
            self._audit(conn, request_id, "submitted", requester, {"anchor": anchor, "model": model, "reason": reason})
        return self.get(request_id), True

    def get(self, request_id: str) -> RequestRecord:
        """One request; a clear error for an unknown id."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(requests_table).where(requests_table.c.id == request_id)).first()
        if row is None:
            raise LetheError(f"no request {request_id!r} (see `lethe request list`)")
        return _record(row)

    def list(self, status: str | None = None) -> list[RequestRecord]:
        """Requests, oldest first, optionally of one status."""
        query = sa.select(requests_table).order_by(requests_table.c.created_at, requests_table.c.id)
        if status:
            if status not in STATUSES:
                raise LetheError(f"unknown status {status!r}; statuses are {', '.join(STATUSES)}")
            query = query.where(requests_table.c.status == status)
        with self.engine.connect() as conn:
            return [_record(r) for r in conn.execute(query)]

    def transition(self, request_id: str, status: str, actor: str = "lethe",
                   result: dict[str, Any] | None = None, detail: dict[str, Any] | None = None) -> RequestRecord:
        """Move a request to `status` (checked against TRANSITIONS) and audit it."""
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(requests_table).where(requests_table.c.id == request_id)
                               .with_for_update()).first()
            if row is None:
                raise LetheError(f"no request {request_id!r}")
            current = row.status
            if status not in TRANSITIONS[current]:
                raise LetheError(f"request {request_id} is {current}; it cannot become {status}")
            values: dict[str, Any] = {"status": status, "updated_at": now()}
            if status == RUNNING:
                values["attempts"] = row.attempts + 1
            if result is not None:
                values["result"] = json.dumps(result, default=str)
            if status in (COMPLETED, REJECTED):
                values["description"] = None  # keep only its digest once the request is done
            conn.execute(requests_table.update().where(requests_table.c.id == request_id).values(**values))
            self._audit(conn, request_id, f"status:{status}", actor, {"from": current, **(detail or {})})
        return self.get(request_id)

    # -- audit ---------------------------------------------------------------------------------
    def audit(self, event: str, request_id: str | None = None, actor: str = "lethe",
              detail: dict[str, Any] | None = None) -> None:
        """Append one event to the ledger."""
        with self.engine.begin() as conn:
            self._audit(conn, request_id, event, actor, detail or {})

    @staticmethod
    def _audit(conn: sa.Connection, request_id: str | None, event: str, actor: str, detail: dict) -> None:
        conn.execute(audit_table.insert().values(at=now(), request_id=request_id, event=event, actor=actor,
                                                 detail=json.dumps(detail, default=str, sort_keys=True)))

    def audit_log(self, request_id: str | None = None) -> list[dict[str, Any]]:
        """Ledger events in order, optionally of one request."""
        query = sa.select(audit_table).order_by(audit_table.c.seq)
        if request_id:
            query = query.where(audit_table.c.request_id == request_id)
        with self.engine.connect() as conn:
            return [{**dict(r._mapping), "detail": json.loads(r.detail)} for r in conn.execute(query)]
