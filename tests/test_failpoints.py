"""Failpoints: unarmed they do nothing; armed they SIGKILL the process (a real one here)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from lethe import failpoints


def test_unarmed_failpoints_do_nothing(monkeypatch):
    monkeypatch.delenv(failpoints.ENV, raising=False)
    for name in failpoints.FAILPOINTS:
        failpoints.reach(name)


def test_unknown_names_fail_loudly(monkeypatch):
    with pytest.raises(ValueError, match="unknown failpoint"):
        failpoints.reach("no.such.point")
    monkeypatch.setenv(failpoints.ENV, "training.checkpointed,typo.point")
    with pytest.raises(ValueError, match="typo.point"):
        failpoints.armed()


def test_an_armed_failpoint_kills_its_process_group():
    code = ("import subprocess, sys, time; from lethe import failpoints; "
            "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
            "print(child.pid, flush=True); failpoints.reach('dvc.pushing'); time.sleep(60)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, failpoints.ENV: "dvc.pushing"}, start_new_session=True)
    assert done.returncode == -signal.SIGKILL
    child = int(done.stdout.split()[0])
    with pytest.raises(ProcessLookupError):  # the child (a `dvc push`, say) died with it
        for _ in range(50):
            os.kill(child, 0)
            __import__("time").sleep(0.1)
