"""The request queue and the append-only audit ledger, in one SQL database.

SQLite by default (a file under artifacts/), any SQLAlchemy URL in production (PostgreSQL).
A request moves pending -> running -> completed | rejected | failed; a failed request may run
again (it resumes from its work directory); a rollback marks the requests it dropped `superseded`
and queues them again; `cancelled` ends a request that has not completed. Every transition, gate
decision and alias move is an audit event; events are only ever inserted (on SQLite a trigger
refuses UPDATE and DELETE).

Identity: the normalized anchor (Unicode NFKC, case-folded, spacing collapsed, surrounding
punctuation dropped: "Nikolai Abilov." is "nikolai abilov") on one base model, of one kind: an
`unlearn` request forgets the entity in the model's weights (MAGE), an `agentic` one in an agent's
weights and memory (SBU). A unique index on the active requests makes two concurrent submissions of
one anchor one request.

Leases: a runner claims a request (owner, expiry) in one conditional UPDATE, renews the lease while
it works, and releases it when done. A second runner cannot claim a leased request; a crashed
runner's request is taken over once its lease expires, at once when that runner was a process of
this host that no longer exists. Per-model locks (same table idea) keep the
plan-to-promote section of one registered model to one runner at a time.

The anchor is the only user-supplied content kept about the entity: the optional description
is used while the request runs and is then replaced by its SHA-256 digest.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from lethe.errors import LetheError

PENDING, RUNNING, COMPLETED, REJECTED, FAILED = "pending", "running", "completed", "rejected-by-gate", "failed"
SUPERSEDED, CANCELLED = "superseded", "cancelled"
STATUSES = (PENDING, RUNNING, COMPLETED, REJECTED, FAILED, SUPERSEDED, CANCELLED)
TRANSITIONS = {
    PENDING: {RUNNING, CANCELLED},
    RUNNING: {COMPLETED, REJECTED, FAILED},
    FAILED: {RUNNING, CANCELLED},
    COMPLETED: {SUPERSEDED},
    REJECTED: set(),
    SUPERSEDED: set(),
    CANCELLED: set(),
}
UNLEARN, AGENTIC = "unlearn", "agentic"
KINDS = (UNLEARN, AGENTIC)
# A second submission of the same anchor for the same model joins the existing request.
JOINABLE = (PENDING, RUNNING, FAILED, COMPLETED)
DEFAULT_LEASE_SECONDS = 120.0

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
    sa.Column("lease_owner", sa.String(200)),
    sa.Column("lease_expires", sa.Float),
    sa.Column("kind", sa.String(20), nullable=False, server_default=UNLEARN),
    sa.Column("memory", sa.String(500)),  # an agentic request's agent memory (SQLite file)
)
_active = requests_table.c.status.in_(JOINABLE)
_active_index = sa.Index("uq_active_request_kind", requests_table.c.anchor_key, requests_table.c.model,
                         requests_table.c.kind, unique=True, sqlite_where=_active, postgresql_where=_active)
locks_table = sa.Table(
    "locks", _meta,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("expires", sa.Float, nullable=False),
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
    """Normalized anchor: the identity used to join duplicate submissions."""
    folded = " ".join(unicodedata.normalize("NFKC", anchor).casefold().split())
    return folded.strip(" .,;:!?\"'()[]{}«»“”‘’")


def runner_id() -> str:
    """Who holds a lease: host and process (a worker, a CLI run)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def died_here(owner: str | None) -> bool:
    """The owner is a runner of this host whose process is gone (killed, crashed): its lease and locks
    need not wait for expiry. Owners on other hosts (or unparsable ones) only ever expire."""
    host, _, rest = (owner or "").partition(":")
    pid_text = rest.split(":", 1)[0]
    if host != socket.gethostname() or not pid_text.isdigit() or int(pid_text) <= 1:
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


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
    lease_owner: str | None = None
    lease_expires: float | None = None
    kind: str = UNLEARN
    memory: str | None = None

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
        self._migrate()
        if self.engine.dialect.name == "sqlite":
            with self.engine.begin() as conn:
                for statement in _APPEND_ONLY:
                    conn.exec_driver_sql(statement)

    def _migrate(self) -> None:
        """Bring a queue created by an earlier version up to date (create_all adds no columns): the lease
        columns, the request kind, and the active-request index that includes the kind."""
        inspector = sa.inspect(self.engine)
        columns = {c["name"] for c in inspector.get_columns("requests")}
        indexes = {i["name"] for i in inspector.get_indexes("requests")}
        with self.engine.begin() as conn:
            for name, kind in (("lease_owner", "VARCHAR(200)"), ("lease_expires", "FLOAT"),
                               ("kind", f"VARCHAR(20) NOT NULL DEFAULT '{UNLEARN}'"), ("memory", "VARCHAR(500)")):
                if name not in columns:
                    conn.exec_driver_sql(f"ALTER TABLE requests ADD COLUMN {name} {kind}")
            if "uq_active_request" in indexes:  # the index before request kinds
                conn.exec_driver_sql("DROP INDEX uq_active_request")
            if _active_index.name not in indexes:  # create_all makes it only with a new table
                _active_index.create(conn, checkfirst=True)

    # -- requests ----------------------------------------------------------------------------
    def add(self, anchor: str, model: str, requester: str, reason: str,
            description: str | None = None, kind: str = UNLEARN,
            memory: str | None = None) -> tuple[RequestRecord, bool]:
        """Queue a request of `kind` (unlearn | agentic; an agentic one names the agent's `memory`); returns
        (record, created). A duplicate joins the existing request, also when two submissions race (the
        unique index on active requests decides)."""
        if not requester.strip() or not reason.strip():
            raise LetheError("a request needs a requester and a reason (they go into the audit ledger)")
        if kind not in KINDS:
            raise LetheError(f"unknown request kind {kind!r}; kinds are {', '.join(KINDS)}")
        if (kind == AGENTIC) != bool(memory):
            raise LetheError("an agentic request names the agent's memory, and only an agentic request does")
        key = anchor_key(anchor)
        if not key:
            raise LetheError(f"the anchor {anchor!r} is empty once normalized")
        for _ in range(3):
            existing = self._active(key, model, kind)
            if existing is not None:
                self.audit("duplicate_submission", existing.id, requester, {"reason": reason})
                return existing, False
            stamp = now()
            request_id = f"req-{stamp[:10].replace('-', '')}-{uuid.uuid4().hex[:8]}"
            try:
                with self.engine.begin() as conn:
                    conn.execute(requests_table.insert().values(
                        id=request_id, anchor=anchor, anchor_key=key, model=model, description=description,
                        description_sha256=hashlib.sha256(description.encode()).hexdigest() if description else None,
                        requester=requester, reason=reason, status=PENDING, created_at=stamp, updated_at=stamp,
                        attempts=0, result=None, kind=kind, memory=memory))
                    self._audit(conn, request_id, "submitted", requester,
                                {"anchor": anchor, "model": model, "reason": reason, "kind": kind,
                                 **({"memory": memory} if memory else {})})
            except sa.exc.IntegrityError:
                continue  # another submission of this anchor won the race: join it
            return self.get(request_id), True
        raise LetheError(f"could not queue {anchor!r}: concurrent submissions kept conflicting")

    def _active(self, key: str, model: str, kind: str) -> RequestRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(requests_table).where(
                requests_table.c.anchor_key == key, requests_table.c.model == model, requests_table.c.kind == kind,
                _active)).first()
        return _record(row) if row is not None else None

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
            if status not in (RUNNING,):
                values.update(lease_owner=None, lease_expires=None)
            if result is not None:
                values["result"] = json.dumps(result, default=str)
            if status in (COMPLETED, REJECTED, CANCELLED, SUPERSEDED):
                values["description"] = None  # keep only its digest once the request is done
            conn.execute(requests_table.update().where(requests_table.c.id == request_id).values(**values))
            self._audit(conn, request_id, f"status:{status}", actor, {"from": current, **(detail or {})})
        return self.get(request_id)

    # -- leases --------------------------------------------------------------------------------
    def claim(self, request_id: str, owner: str, seconds: float = DEFAULT_LEASE_SECONDS) -> RequestRecord | None:
        """Take the request to run it: pending or failed, or running under an expired lease (its runner
        died). One conditional UPDATE, so two runners never both win. None when someone else holds it."""
        current = self.get(request_id)
        stamp = time.time()
        claimable = sa.or_(requests_table.c.status.in_((PENDING, FAILED)),
                           sa.and_(requests_table.c.status == RUNNING,
                                   sa.or_(requests_table.c.lease_expires.is_(None),
                                          requests_table.c.lease_expires < stamp)),
                           sa.and_(requests_table.c.status == RUNNING, requests_table.c.lease_owner == owner))
        if current.status == RUNNING and died_here(current.lease_owner):  # compare-and-set on that dead owner
            claimable = sa.or_(claimable, sa.and_(requests_table.c.status == RUNNING,
                                                  requests_table.c.lease_owner == current.lease_owner))
        with self.engine.begin() as conn:
            done = conn.execute(requests_table.update().where(requests_table.c.id == request_id, claimable).values(
                status=RUNNING, lease_owner=owner, lease_expires=stamp + seconds, updated_at=now(),
                attempts=requests_table.c.attempts + 1))
            if done.rowcount != 1:
                return None
            event = "lease_taken_over" if current.status == RUNNING else f"status:{RUNNING}"
            self._audit(conn, request_id, event, owner, {"from": current.status, "previous_owner": current.lease_owner})
        return self.get(request_id)

    def heartbeat(self, request_id: str, owner: str, seconds: float = DEFAULT_LEASE_SECONDS) -> bool:
        """Renew the lease; False when it is no longer ours (taken over after expiry)."""
        with self.engine.begin() as conn:
            done = conn.execute(requests_table.update().where(
                requests_table.c.id == request_id, requests_table.c.lease_owner == owner,
                requests_table.c.status == RUNNING).values(lease_expires=time.time() + seconds))
        return done.rowcount == 1

    def acquire_lock(self, name: str, owner: str, seconds: float = DEFAULT_LEASE_SECONDS, wait: float = 3600.0,
                     poll: float = 1.0) -> None:
        """Hold the named lock (e.g. one per registered model), waiting up to `wait` seconds; an expired
        holder (crashed) loses it."""
        deadline = time.monotonic() + wait
        while True:
            stamp = time.time()
            with self.engine.begin() as conn:
                conn.execute(locks_table.delete().where(locks_table.c.name == name, locks_table.c.expires < stamp))
                holder = conn.execute(sa.select(locks_table.c.owner).where(locks_table.c.name == name)).scalar()
                if holder is not None and holder != owner and died_here(holder):
                    conn.execute(locks_table.delete().where(locks_table.c.name == name,
                                                            locks_table.c.owner == holder))
                try:
                    conn.execute(locks_table.insert().values(name=name, owner=owner, expires=stamp + seconds))
                    return
                except sa.exc.IntegrityError:
                    pass
            with self.engine.begin() as conn:  # re-entrant for the same owner
                renewed = conn.execute(locks_table.update().where(locks_table.c.name == name,
                                                                  locks_table.c.owner == owner)
                                       .values(expires=stamp + seconds))
                if renewed.rowcount == 1:
                    return
            if time.monotonic() > deadline:
                raise LetheError(f"lock {name!r} is held by another runner; gave up after {wait:.0f} s")
            time.sleep(poll)

    def renew_lock(self, name: str, owner: str, seconds: float = DEFAULT_LEASE_SECONDS) -> bool:
        with self.engine.begin() as conn:
            done = conn.execute(locks_table.update().where(locks_table.c.name == name, locks_table.c.owner == owner)
                                .values(expires=time.time() + seconds))
        return done.rowcount == 1

    def release_lock(self, name: str, owner: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(locks_table.delete().where(locks_table.c.name == name, locks_table.c.owner == owner))

    def gate_verdict(self, model_name: str, version: str) -> str | None:
        """The gate's status for a model version as the ledger recorded it (not the server's tag)."""
        query = sa.select(audit_table.c.detail).where(audit_table.c.event == "gate_decision").order_by(audit_table.c.seq)
        verdict = None
        with self.engine.connect() as conn:
            for (raw,) in conn.execute(query):
                detail = json.loads(raw)
                if str(detail.get("model_version")) == str(version) and detail.get("model") == model_name:
                    verdict = detail.get("status")
        return verdict

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
