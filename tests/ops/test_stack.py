"""The local stack knows its own servers: two project folders on one machine never share a registry.

Real servers (SeaweedFS S3 + MLflow with a SQLite store) on 127.0.0.1, started and stopped here.
"""

from __future__ import annotations

import os
import sqlite3

import pytest

from lethe.config import StackParams
from lethe.errors import ConfigError
from lethe.ops import prefect_service
from lethe.ops.stack import LocalStack, _cmdline, _pid_alive, _terminate, free_port
from tests.pipeline.local_stack import s3_keys

pytestmark = pytest.mark.slow  # real servers


def _cfg(state_dir, mlflow_port: int, s3_port: int, s3: str = "seaweedfs", prefect_port: int = 0) -> StackParams:
    """A stack on the given ports; with a Prefect server and worker only when a prefect_port is given."""
    return StackParams(host="127.0.0.1", mlflow_port=mlflow_port, s3_port=s3_port, s3_server=s3,
                       prefect=bool(prefect_port), prefect_port=prefect_port or 5057, state_dir=str(state_dir),
                       artifact_bucket="lethe-mlflow", dvc_bucket="lethe-dvc", schedule_cron="0 2 * * *",
                       timezone="UTC")


def _models_in(backend_store_uri: str) -> set[str]:
    with sqlite3.connect(backend_store_uri.removeprefix("sqlite:///")) as conn:
        return {row[0] for row in conn.execute("SELECT name FROM registered_models")}


def test_two_project_folders_with_the_same_ports_get_two_registries(tmp_path):
    from mlflow import MlflowClient

    ports = (free_port("127.0.0.1"), free_port("127.0.0.1"))
    prefect = free_port("127.0.0.1")
    first = LocalStack(_cfg(tmp_path / "checkout-a", *ports, prefect_port=prefect))
    second = LocalStack(_cfg(tmp_path / "checkout-b", *ports, prefect_port=prefect))  # same params, other folder
    try:
        a = first.up()
        assert second.info() is None  # a server answers on its ports, but it is not its server
        b = second.up()
        assert (b.tracking_uri, b.s3_endpoint, b.prefect_api_url) != (a.tracking_uri, a.s3_endpoint, a.prefect_api_url)
        assert prefect_service.healthy(a.prefect_api_url) and prefect_service.healthy(b.prefect_api_url)
        assert not prefect_service.is_ours(a.prefect_api_url, second._token())  # each server holds its own token
        for info in (a, b):  # a worker per stack, on its own server
            assert _pid_alive(info.worker_pid)
            assert prefect_service.worker_name(int(info.prefect_api_url.rsplit(":", 1)[1].split("/")[0])) in \
                " ".join(_cmdline(info.worker_pid))
        assert a.backend_store_uri != b.backend_store_uri
        MlflowClient(tracking_uri=a.tracking_uri).create_registered_model("lethe-model-of-a")
        MlflowClient(tracking_uri=b.tracking_uri).create_registered_model("lethe-model-of-b")
        assert _models_in(a.backend_store_uri) == {"lethe-model-of-a"}
        assert _models_in(b.backend_store_uri) == {"lethe-model-of-b"}
        assert second.up() == b and first.info() == a  # idempotent, each finds its own
        assert ".lethe-stack-identity" in s3_keys(b.s3_endpoint, "lethe-mlflow")
    finally:
        second.down()
        first.down()
    assert not _pid_alive(a.mlflow_pid) and not _pid_alive(b.s3_pid)
    assert not any(_pid_alive(pid) for pid in (a.prefect_pid, a.worker_pid, b.prefect_pid, b.worker_pid))


def test_half_dead_stack_restarts_only_the_dead_server_and_keeps_s3_objects(tmp_path):
    stack = LocalStack(_cfg(tmp_path / "stack", free_port("127.0.0.1"), free_port("127.0.0.1")))
    try:
        info = stack.up()
        from tests.pipeline.local_stack import s3_client

        s3_client(info.s3_endpoint).put_object(Bucket="lethe-dvc", Key="kept", Body=b"x")
        stack.stop_mlflow(hard=True)
        assert stack.info() is None
        again = stack.up()
        assert again.s3_pid == info.s3_pid and again.mlflow_pid != info.mlflow_pid
        assert "kept" in s3_keys(again.s3_endpoint, "lethe-dvc")
    finally:
        stack.down()


def test_switching_the_s3_server_kind_replaces_the_running_one(tmp_path):
    """A stack of moto (in memory) is not adopted once params ask for SeaweedFS: it is stopped, not reused."""
    ports = (free_port("127.0.0.1"), free_port("127.0.0.1"))
    in_memory = LocalStack(_cfg(tmp_path / "stack", *ports, s3="moto"))
    on_disk = LocalStack(_cfg(tmp_path / "stack", *ports))
    try:
        first = in_memory.up()
        assert on_disk.info() is None
        second = on_disk.up()
        assert not _pid_alive(first.s3_pid) and second.s3_pid != first.s3_pid
        assert (tmp_path / "stack" / "s3").is_dir()
    finally:
        on_disk.down()
        in_memory.down()


def test_a_recorded_pid_that_is_not_ours_is_never_signalled():
    assert not _pid_alive(0) and not _pid_alive(1) and not _pid_alive(-5)
    assert _terminate(0, "mlflow", 5055, hard=True) is False  # killpg(0) would hit our own group
    assert _terminate(os.getpid(), "mlflow", 5055, hard=True) is False  # alive, but not an MLflow server


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.4", "example.org"])
def test_stack_host_must_be_loopback(host, tmp_path):
    from lethe.config import load_params

    text = open("params.yaml").read().replace("host: 127.0.0.1", f"host: {host}")
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="not a loopback address"):
        load_params(path)
