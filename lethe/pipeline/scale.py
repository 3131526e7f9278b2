"""Where a compliance run's read-only work runs: a Dask cluster, through prefect-dask.

`LETHE_DASK_ADDRESS`, else `scale.dask_address`, names an existing scheduler (production: the
Dask services of infra/compose.yaml, whose workers see the same model and work folders); empty
starts a `LocalCluster` for the run on 127.0.0.1 (`scale.workers` processes x
`scale.threads_per_worker` threads, torch threads capped to the same), whose dashboard port is
picked free so two runs on one machine never collide.
"""

from __future__ import annotations

import os
import socket

from prefect_dask import DaskTaskRunner

from lethe.config import ScaleParams, check_scheduler_address
from lethe.errors import ConfigError

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def dask_address(scale: ScaleParams) -> str:
    """The scheduler to use: LETHE_DASK_ADDRESS, else params.yaml; empty for a LocalCluster."""
    address = os.environ.get("LETHE_DASK_ADDRESS", "").strip()
    try:
        return check_scheduler_address(address) or scale.dask_address
    except ValueError as exc:
        raise ConfigError(f"LETHE_DASK_ADDRESS: {exc}") from exc


def dask_task_runner(scale: ScaleParams) -> DaskTaskRunner:
    """The task runner of the fan-out phases: the named cluster, else a LocalCluster on loopback."""
    address = dask_address(scale)
    if address:
        return DaskTaskRunner(address=address)
    threads = str(scale.threads_per_worker)
    return DaskTaskRunner(cluster_class="distributed.LocalCluster", cluster_kwargs={
        "n_workers": scale.workers, "threads_per_worker": scale.threads_per_worker, "processes": True,
        "host": "127.0.0.1", "dashboard_address": "127.0.0.1:0", "silence_logs": 40,
        "env": {name: threads for name in _THREAD_VARIABLES}})


def worker_name() -> str:
    """Which process ran a task (host:pid): the audit table says which worker measured each row."""
    return f"{socket.gethostname()}:{os.getpid()}"
