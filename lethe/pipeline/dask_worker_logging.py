"""Preloaded into every worker process of the LocalCluster Lethe starts (`scale._local_cluster_kwargs`).

A worker's heartbeat can be in flight while the cluster shuts down: the scheduler closes the stream
under it and the worker logs "Failed to communicate with scheduler during heartbeat." at ERROR with a
CommClosedError traceback. The run itself completed; the traceback only reads as a crash on stderr
(and a `--json` caller's stderr check trips on it). This drops that one record, only when the stream
was closed; any other heartbeat failure (a timeout, a refused connection) still shows.
"""

from __future__ import annotations

import logging

HEARTBEAT_FAILURE = "Failed to communicate with scheduler during heartbeat."


class ClosedStreamHeartbeatFilter(logging.Filter):
    """Drops the heartbeat failure a closed scheduler stream causes; passes every other record."""

    def filter(self, record: logging.LogRecord) -> bool:
        from distributed.comm.core import CommClosedError

        if record.getMessage() != HEARTBEAT_FAILURE or not record.exc_info:
            return True
        return not isinstance(record.exc_info[1], CommClosedError)


def install() -> None:
    """Adds the filter to the `distributed.worker` logger once (the heartbeat logs there directly)."""
    logger = logging.getLogger("distributed.worker")
    if not any(isinstance(f, ClosedStreamHeartbeatFilter) for f in logger.filters):
        logger.addFilter(ClosedStreamHeartbeatFilter())


def dask_setup(worker) -> None:  # noqa: ARG001 - Dask's preload hook; the worker is not needed
    """Dask's preload entry point, run in each worker process before it starts."""
    install()
