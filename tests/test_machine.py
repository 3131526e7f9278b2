"""One training run per machine, released when its holder dies; threads from the free cores."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from lethe.machine import free_cores, thread_count, training_slot

HOLD = """
import json, sys, time
from lethe.machine import training_slot
with training_slot(poll_seconds=0.1) as slot:
    start = time.time()
    print("held", flush=True)
    time.sleep(float(sys.argv[1]))
    print(json.dumps({"start": start, "end": time.time(), "waited": slot["waited_seconds"]}), flush=True)
"""


def _holder(seconds: float, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", HOLD, str(seconds)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def _env(tmp_path) -> dict:
    return {**os.environ, "LETHE_MACHINE_LOCK_DIR": str(tmp_path)}


def test_two_processes_train_one_after_the_other(tmp_path):
    first = _holder(1.5, _env(tmp_path))
    assert first.stdout.readline().strip() == "held"
    second = _holder(0.2, _env(tmp_path))
    a = json.loads(first.communicate(timeout=120)[0].strip().splitlines()[-1])
    out, err = second.communicate(timeout=120)
    b = json.loads(out.strip().splitlines()[-1])
    assert b["start"] >= a["end"] and b["waited"] > 0  # no overlap: the second waited for the first
    assert f"held by pid {first.pid}" in err


def test_a_killed_holder_frees_the_slot_at_once(tmp_path, monkeypatch):
    holder = _holder(600, _env(tmp_path))
    assert holder.stdout.readline().strip() == "held"
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=10)
    monkeypatch.setenv("LETHE_MACHINE_LOCK_DIR", str(tmp_path))
    started = time.perf_counter()
    with training_slot(poll_seconds=0.1) as slot:
        assert slot["waited_seconds"] == 0
    assert time.perf_counter() - started < 2


def test_a_busy_neighbour_is_counted():
    from lethe.machine import others_load

    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        assert others_load(window=1.0) > 0.6  # whatever else runs, the spinner keeps a core busy
    finally:
        busy.kill()
        busy.wait()


def test_this_process_own_cpu_time_is_not_counted(monkeypatch):
    """Logic: machine busy 1.5 cores over the window, 1.0 of them this process -> 0.5 from others."""
    import lethe.machine as machine

    samples = iter([(1000, 4000), (1000 + 150, 4000 + 200)])  # 150 of 200 jiffies busy on 2 cpus
    own = iter([os.times_result((1.0, 0.0, 0.0, 0.0, 0.0)), os.times_result((1.25, 0.0, 0.0, 0.0, 0.0))])
    monkeypatch.setattr(machine, "_cpu_jiffies", lambda: next(samples))
    monkeypatch.setattr(machine.os, "times", lambda: next(own))
    monkeypatch.setattr(machine.os, "cpu_count", lambda: 2)
    assert machine.others_load(window=0.25) == pytest.approx(0.5)


def test_threads_follow_the_free_cores():
    assert free_cores(load=0.0, cores=2) == 2
    assert free_cores(load=1.0, cores=2) == 1  # another process keeps one core busy
    assert free_cores(load=7.5, cores=2) == 1  # never zero
    assert thread_count(cap=2, load=0.2, cores=16) == 2  # the configured cap still applies
    assert thread_count(cap=8, load=3.0, cores=8) == 5
