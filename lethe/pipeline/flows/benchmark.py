"""Prefect flow: run the benchmark scripts under bench/ (each writes JSON to bench/results)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

ROOT = Path(__file__).resolve().parents[3]  # the repository (bench/ lives there)
BENCHMARKS = {
    "world_build": ["bench/world_build.py", "--sizes", "tiny"],
    "sampling_throughput": ["bench/sampling_throughput.py"],
    "mining": ["bench/mining.py", "--split", "forget05"],
    "efficacy": ["bench/efficacy.py", "--split", "forget01"],
    "main_job": ["bench/main_job.py"],
}


@task(name="benchmark", cache_policy=NO_CACHE)
def run_benchmark(name: str) -> dict:
    """One benchmark script; its stdout tail and exit code."""
    done = subprocess.run([sys.executable, *BENCHMARKS[name]], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark {name} failed: {done.stderr[-800:]}")
    return {"name": name, "stdout": done.stdout[-2000:]}


@flow(name="benchmark")
def benchmark_flow(names: list[str] | None = None) -> list[dict]:
    """Run the named benchmarks (all by default), one after another (they share the cores)."""
    return [run_benchmark(name) for name in (names or list(BENCHMARKS))]
