"""Where a compliance run's read-only work runs: a Dask cluster, through prefect-dask.

`LETHE_DASK_ADDRESS`, else `scale.dask_address`, names an existing scheduler (production: the
Dask services of infra/compose.yaml, whose workers see the same model and work folders); empty
starts a `LocalCluster` for the run on 127.0.0.1 (`scale.workers` processes x
`scale.threads_per_worker` threads, torch threads capped to the same), whose dashboard port is
picked free so two runs on one machine never collide. A compliance run starts that LocalCluster
once for all its phases (`shared_cluster`).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import dask
from prefect_dask import DaskTaskRunner

from lethe.config import ScaleParams, check_scheduler_address
from lethe.errors import ConfigError

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
WORKER_PRELOAD = "lethe.pipeline.dask_worker_logging"  # quiets the shutdown heartbeat race in each worker

# Dask's nannies export MALLOC_TRIM_THRESHOLD_ to every worker they spawn. Any explicit value turns off
# glibc's dynamic mmap threshold, so torch's large buffers are mapped and unmapped on every allocation.
# Measured here: one evaluation shard (the suite) took 43-50 s with it and 23-28 s without.
dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None})


def dask_address(scale: ScaleParams) -> str:
    """The scheduler to use: LETHE_DASK_ADDRESS, else params.yaml; empty for a LocalCluster."""
    address = os.environ.get("LETHE_DASK_ADDRESS", "").strip()
    try:
        return check_scheduler_address(address) or scale.dask_address
    except ValueError as exc:
        raise ConfigError(f"LETHE_DASK_ADDRESS: {exc}") from exc


def _local_cluster_kwargs(scale: ScaleParams) -> dict:
    threads = str(scale.threads_per_worker)
    return {"n_workers": scale.workers, "threads_per_worker": scale.threads_per_worker, "processes": True,
            "host": "127.0.0.1", "dashboard_address": "127.0.0.1:0", "silence_logs": 40,
            "env": {name: threads for name in _THREAD_VARIABLES}, "preload": [WORKER_PRELOAD]}


@contextmanager
def shared_cluster(scale: ScaleParams) -> Iterator[str]:
    """One LocalCluster for every fan-out phase inside the block (a compliance run's mining, its
    requests' evaluation shards, its audits), so the workers start once and stay warm; its address is
    LETHE_DASK_ADDRESS inside the block (subflows in this process find it there). A configured
    scheduler is used as it is. Yields the scheduler's address."""
    address = dask_address(scale)
    if address:
        yield address
        return
    from distributed import LocalCluster

    cluster = LocalCluster(**_local_cluster_kwargs(scale))
    before = os.environ.get("LETHE_DASK_ADDRESS")
    os.environ["LETHE_DASK_ADDRESS"] = cluster.scheduler_address
    try:
        yield cluster.scheduler_address
    finally:
        if before is None:
            os.environ.pop("LETHE_DASK_ADDRESS", None)
        else:
            os.environ["LETHE_DASK_ADDRESS"] = before
        _close_quietly(cluster)


def _close_quietly(cluster) -> None:
    """Close a LocalCluster without its shutdown chatter: while the workers go, the scheduler logs at
    INFO, with a traceback, the comms they closed under it (distributed.batched), which reads as a
    crash on stderr. `silence_logs` covers only the cluster's start. Errors still show."""
    import logging

    logger = logging.getLogger("distributed")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        cluster.close()
    finally:
        logger.setLevel(level)


def dask_task_runner(scale: ScaleParams) -> DaskTaskRunner:
    """The task runner of the fan-out phases: the named cluster, else a LocalCluster on loopback."""
    address = dask_address(scale)
    if address:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(cluster_class="distributed.LocalCluster", cluster_kwargs=_local_cluster_kwargs(scale))


def worker_name() -> str:
    """Which process ran a task (host:pid): the audit table says which worker measured each row."""
    return f"{socket.gethostname()}:{os.getpid()}"
