"""One readable line for why a request stopped (logic only)."""

from __future__ import annotations

import errno

from lethe.errors import LetheError
from lethe.ops.failures import explain


def test_a_refused_mlflow_connection_names_the_server_and_its_address():
    inner = ConnectionRefusedError(111, "Connection refused")
    try:
        try:
            raise inner
        except OSError as exc:
            raise RuntimeError("API request to http://127.0.0.1:4567/api/2.0/mlflow/runs/get failed with exception "
                               "HTTPConnectionPool(host='127.0.0.1', port=4567): Max retries exceeded") from exc
    except RuntimeError as exc:
        assert explain(exc) == ("the MLflow tracking server at http://127.0.0.1:4567 is not reachable "
                                "(connection refused)")


def test_an_unreachable_dvc_remote_is_named():
    exc = LetheError('dvc push failed (remote s3://b/store, endpoint http://127.0.0.1:9): ERROR: unexpected error - '
                     'Could not connect to the endpoint URL: "http://127.0.0.1:9/b/store/files"')
    assert explain(exc) == "the DVC remote at http://127.0.0.1:9 is not reachable (connection refused)"


def test_a_full_disk_is_named_with_its_file():
    exc = OSError(errno.ENOSPC, "No space left on device", "/work/req-1/adapter/adapter_model.safetensors")
    assert explain(exc) == ("no space left on the disk writing /work/req-1/adapter/adapter_model.safetensors "
                            "(No space left on device)")
    wrapped = RuntimeError("safetensors error: No space left on device (os error 28)")
    assert explain(wrapped).startswith("no space left on the disk (No space left on device")


def test_anything_else_is_its_first_line_bounded():
    message = explain(ValueError("first\nsecond " + "x" * 1000), limit=50)
    assert message.startswith("ValueError: first second") and len(message) == 50 and "\n" not in message
