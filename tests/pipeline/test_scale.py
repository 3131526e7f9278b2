"""The fan-out runner on a real Dask LocalCluster (prefect-dask), started on 127.0.0.1 and stopped:
tasks run in the cluster's worker processes with the configured threads, and a worker killed
mid-task loses nothing (Dask runs the task again on another worker), and every worker process runs
the preload that keeps the shutdown heartbeat race off stderr (lethe.pipeline.dask_worker_logging)."""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

import pytest
from prefect import flow, task

from lethe.config import ScaleParams
from lethe.errors import ConfigError
from lethe.pipeline.dask_worker_logging import ClosedStreamHeartbeatFilter
from lethe.pipeline.scale import dask_task_runner, worker_name


@task
def where_am_i(index: int) -> dict:
    time.sleep(1.0)  # long enough that one worker cannot take both tasks before the other starts
    heartbeat_filters = logging.getLogger("distributed.worker").filters
    return {"index": index, "worker": worker_name(), "omp": os.environ.get("OMP_NUM_THREADS"),
            "malloc_trim": os.environ.get("MALLOC_TRIM_THRESHOLD_"),
            "quiet_heartbeat": any(isinstance(f, ClosedStreamHeartbeatFilter) for f in heartbeat_filters)}


@flow
def fan_out(count: int) -> list[dict]:
    return [f.result() for f in where_am_i.map(list(range(count)))]


def test_tasks_run_on_the_local_clusters_worker_processes(prefect_harness):
    runner = dask_task_runner(ScaleParams(workers=2, threads_per_worker=1))
    assert runner.cluster_kwargs["host"] == "127.0.0.1"
    rows = fan_out.with_options(task_runner=runner)(4)
    assert [r["index"] for r in rows] == [0, 1, 2, 3]
    pids = {int(r["worker"].rsplit(":", 1)[1]) for r in rows}
    assert os.getpid() not in pids and len(pids) == 2  # two worker processes, neither this one
    assert {r["omp"] for r in rows} == {"1"}  # torch threads follow scale.threads_per_worker
    # Dask's default MALLOC_TRIM_THRESHOLD_ made torch ~1.7x slower in its workers (lethe.pipeline.scale)
    assert {r["malloc_trim"] for r in rows} == {None}
    assert {r["quiet_heartbeat"] for r in rows} == {True}  # the preload ran in every worker process


@task
def survives_a_kill(marker: Path) -> dict:
    """First run: leave its pid for the test to kill, then hang. The rerun elsewhere finishes."""
    if not marker.exists():
        marker.write_text(str(os.getpid()))
        time.sleep(120)
    return {"worker": worker_name()}


@flow
def killed_mid_task(marker: Path) -> dict:
    return survives_a_kill.submit(marker).result()


def test_a_worker_killed_mid_task_loses_nothing(prefect_harness, tmp_path):
    import threading

    marker = tmp_path / "first-attempt.pid"

    def kill_the_first_attempt() -> None:
        deadline = time.monotonic() + 120
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        os.kill(int(marker.read_text()), signal.SIGKILL)

    killer = threading.Thread(target=kill_the_first_attempt, daemon=True)
    killer.start()
    started = time.monotonic()
    result = killed_mid_task.with_options(task_runner=dask_task_runner(ScaleParams(workers=2)))(marker)
    killer.join()
    assert int(result["worker"].rsplit(":", 1)[1]) != int(marker.read_text())  # another process finished it
    assert time.monotonic() - started < 100  # rerun at once, not after the first attempt's sleep


def test_an_existing_cluster_is_used_by_address(monkeypatch):
    runner = dask_task_runner(ScaleParams(dask_address="tcp://127.0.0.1:8786"))
    assert runner.address == "tcp://127.0.0.1:8786" and not runner.cluster_kwargs
    monkeypatch.setenv("LETHE_DASK_ADDRESS", "tcp://dask-scheduler:8786")  # production overrides params.yaml
    assert dask_task_runner(ScaleParams()).address == "tcp://dask-scheduler:8786"
    monkeypatch.setenv("LETHE_DASK_ADDRESS", "dask-scheduler")
    with pytest.raises(ConfigError, match="LETHE_DASK_ADDRESS: 'dask-scheduler' is not a Dask scheduler address"):
        dask_task_runner(ScaleParams())


def test_one_cluster_serves_every_phase_of_a_run(prefect_harness, monkeypatch):
    """shared_cluster starts one LocalCluster whose address every fan-out phase inside the block
    connects to (the same worker processes, started once); after the block the cluster is gone and
    the address with it. A configured scheduler is used as it is, nothing started."""
    from lethe.pipeline.scale import shared_cluster

    monkeypatch.delenv("LETHE_DASK_ADDRESS", raising=False)
    scale = ScaleParams(workers=2, threads_per_worker=1)
    with shared_cluster(scale) as address:
        assert os.environ["LETHE_DASK_ADDRESS"] == address and address.startswith("tcp://127.0.0.1:")
        runner = dask_task_runner(scale)
        assert runner.address == address
        first = fan_out.with_options(task_runner=runner)(2)
        second = fan_out.with_options(task_runner=dask_task_runner(scale))(2)
    assert "LETHE_DASK_ADDRESS" not in os.environ
    workers = {row["worker"] for row in first + second}
    assert len(workers) == 2 and worker_name() not in workers  # two phases, the same two processes
    with shared_cluster(ScaleParams(dask_address="tcp://127.0.0.1:8786")) as configured:
        assert configured == "tcp://127.0.0.1:8786" and "LETHE_DASK_ADDRESS" not in os.environ
