"""The worker preload drops only the heartbeat failure a closed scheduler stream causes at shutdown."""

from __future__ import annotations

import logging
import sys

from distributed.comm.core import CommClosedError

from lethe.pipeline.dask_worker_logging import HEARTBEAT_FAILURE, ClosedStreamHeartbeatFilter, install


def _record(message: str, error: BaseException | None) -> logging.LogRecord:
    exc_info = None
    if error is not None:
        try:
            raise error
        except type(error):
            exc_info = sys.exc_info()
    return logging.LogRecord("distributed.worker", logging.ERROR, __file__, 1, message, None, exc_info)


def test_only_the_closed_stream_heartbeat_failure_is_dropped():
    quiet = ClosedStreamHeartbeatFilter()
    assert not quiet.filter(_record(HEARTBEAT_FAILURE, CommClosedError("Stream is closed")))
    assert quiet.filter(_record(HEARTBEAT_FAILURE, OSError("Timed out trying to connect")))  # a real outage shows
    assert quiet.filter(_record(HEARTBEAT_FAILURE, None))
    assert quiet.filter(_record("Unexpected exception during heartbeat. Closing worker.", CommClosedError("x")))


def test_install_adds_the_filter_once():
    logger = logging.getLogger("distributed.worker")
    before = list(logger.filters)
    try:
        install()
        install()
        assert sum(isinstance(f, ClosedStreamHeartbeatFilter) for f in logger.filters) == 1
    finally:
        logger.filters[:] = before
