"""The model's Prefect global concurrency limit: one slot, held while a request trains and promotes.

A model's requests chain (each starts from the champion), so training and promotion for one model run
one at a time across every worker and machine. Two locks say so:

- the queue's per-model lock (lethe.ops.queue, in the queue's database) decides. A runner killed on
  this host frees it at once, an unreachable one when its lease runs out;
- the Prefect global concurrency limit named after the model (`model:<registered name>`, limit 1) is
  taken under it, so the Prefect UI (Concurrency page, the flow run's events) shows which run holds
  the model and Prefect-native tools can see the serialization.

A SIGKILLed runner cannot release its Prefect slot: the server revokes it when its lease expires,
and never when the server restarted with in-memory lease storage (the default), or when the runner
ran on the ephemeral per-command server that died with it. A stale slot would then block the model
for good. Whoever takes the slot holds the model's queue lock, so any slot already taken is stale:
the limit is then created anew (its old leases point at the deleted limit and expire harmlessly),
and the queue's ledger records it (`model_slot_reclaimed`).

Outside a Prefect flow run (unit tests of the queue logic) there is no API to talk to and only the
queue lock applies.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from prefect.runtime import flow_run

log = logging.getLogger(__name__)

SLOT_LEASE_SECONDS = 60.0  # renewed in the background by Prefect while the slot is held


def _reset_limit(name: str) -> int:
    """Make the limit `name` exist with one free slot; the number of stale slots it had."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            existing = client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            existing = None
        if existing is not None and existing.limit == 1 and existing.active and existing.active_slots == 0:
            return 0
        if existing is not None:
            client.delete_global_concurrency_limit_by_name(name)
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1, active=True))
        return existing.active_slots if existing is not None else 0


@contextmanager
def model_slot(name: str, on_reclaim: Callable[[int], None] | None = None,
               wait_seconds: float = 60.0) -> Iterator[bool]:
    """Hold the one slot of the model's Prefect global concurrency limit `name` (the caller holds the
    model's queue lock). Yields whether a slot is held (False outside a flow run). A slot that cannot
    be released (the server is down) is left to its lease: the next holder reclaims it anyway."""
    if flow_run.get_id() is None:
        yield False
        return
    from prefect.concurrency.sync import concurrency

    stale = _reset_limit(name)
    if stale and on_reclaim is not None:
        on_reclaim(stale)
    held = concurrency(name, occupy=1, timeout_seconds=wait_seconds, lease_duration=SLOT_LEASE_SECONDS,
                       strict=True, raise_on_lease_renewal_failure=False)
    held.__enter__()
    try:
        yield True
    finally:
        try:
            held.__exit__(None, None, None)
        except Exception as error:  # noqa: BLE001 - the outcome stands; the slot's lease runs out instead
            log.warning("could not release the Prefect concurrency slot %s (%s); its lease will expire", name, error)
