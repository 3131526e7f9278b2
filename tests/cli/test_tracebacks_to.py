"""Library tracebacks during a CLI command go to a file; the console keeps one line (logic only)."""

from __future__ import annotations

import io
import logging

from lethe.cli.common import tracebacks_to


def test_a_logged_exception_leaves_one_line_and_its_traceback_in_the_file(tmp_path):
    stream = io.StringIO()
    logger = logging.getLogger("prefect.test_tracebacks_to")
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    log = tmp_path / "req-1" / "errors.log"
    try:
        with tracebacks_to(log):
            try:
                raise ValueError("the cause")
            except ValueError:
                logger.error("Task run failed: ValueError('the cause')", exc_info=True)
        logger.error("after the block", exc_info=(ValueError, ValueError("kept"), None))
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert lines[0] == f"Task run failed: ValueError('the cause') (traceback in {log})"
    assert "Traceback (most recent call last)" in log.read_text() and "the cause" in log.read_text()
    assert "kept" in stream.getvalue()  # outside the block the handler is as it was
