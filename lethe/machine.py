"""Sharing one machine between Lethe processes: one training run at a time, threads from free cores.

Two requests training at once on a 2-core machine each started 2 torch threads and the second one
ran 10x slower than alone. Training therefore takes a machine-wide slot: an exclusive `flock` on
a file under the system temp folder (shared by every checkout of Lethe run by this user; set
LETHE_MACHINE_LOCK_DIR to share it wider). The kernel releases the lock when its holder dies,
SIGKILL included, so a crashed run never blocks the machine. Once the slot is held, the thread
count is the configured cap limited to the cores that are actually free now (CPU affinity minus
the cores other processes keep busy, sampled from /proc/stat).
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


def lock_dir() -> Path:
    """The machine-wide folder of Lethe's locks (private to this user)."""
    folder = Path(os.environ.get("LETHE_MACHINE_LOCK_DIR") or Path(tempfile.gettempdir()) / f"lethe-{os.getuid()}")
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return folder


def usable_cores() -> int:
    """Cores this process may run on (CPU affinity, e.g. a container's cpuset)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _cpu_jiffies() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat (None where there is none)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def others_load(window: float = 0.25) -> float:
    """Cores kept busy by other processes now: machine-wide busy time over a short window, minus ours.

    The 1-minute load average would count this very process, which was busy a moment ago, and so
    give a lone run half the cores; sampling /proc/stat while this process sleeps does not.
    """
    before, own_before = _cpu_jiffies(), os.times()
    time.sleep(window)
    after, own_after = _cpu_jiffies(), os.times()
    if before is None or after is None or after[1] <= before[1]:
        return max(0.0, os.getloadavg()[0] - 1.0)  # no /proc: assume one of the load is ours
    cpus = os.cpu_count() or 1
    busy_cores = (after[0] - before[0]) / (after[1] - before[1]) * cpus
    own_cores = ((own_after.user + own_after.system) - (own_before.user + own_before.system)) / window
    return max(0.0, busy_cores - own_cores)


def free_cores(load: float | None = None, cores: int | None = None) -> int:
    """Cores not busy with other processes now: usable cores minus their load (at least 1)."""
    cores = usable_cores() if cores is None else cores
    load = others_load() if load is None else load
    return max(1, min(cores, math.floor(cores - load + 0.5)))


def thread_count(cap: int, load: float | None = None, cores: int | None = None) -> int:
    """torch threads for a heavy step: the configured cap, limited to the free cores."""
    return max(1, min(cap, free_cores(load, cores)))


@contextlib.contextmanager
def training_slot(name: str = "training", poll_seconds: float = 5.0) -> Iterator[dict]:
    """Hold the machine's `name` slot for the duration of the block (waits for the current holder)."""
    path = lock_dir() / f"{name}.lock"
    handle = open(path, "a+")  # noqa: SIM115 - the lock lives as long as the open file
    waited, announced = 0.0, False
    try:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not announced:
                    handle.seek(0)
                    holder = handle.read().strip() or "another process"
                    print(f"waiting for the machine's {name} slot, held by {holder}", file=sys.stderr)
                    announced = True
                time.sleep(poll_seconds)
                waited += poll_seconds
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        yield {"lock": str(path), "waited_seconds": waited}
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()
