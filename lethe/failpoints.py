"""Named crash points for the fault-injection suite (tests/cli/test_faults.py).

`LETHE_FAILPOINT=<name>[,<name>...]` makes the process die by SIGKILL when it reaches that point,
together with its own children when it leads its process group (a DVC push in flight dies with
it), exactly as a power cut or the OOM killer would stop it. Unset, `reach` does nothing. The
names are listed in FAILPOINTS so a typo in a test fails loudly instead of never firing.
"""

from __future__ import annotations

import os
import signal

FAILPOINTS = {
    "training.checkpointed": "right after the trainer saved a checkpoint",
    "dvc.pushing": "while `dvc push` uploads the request's outputs",
    "register.logged": "after the run's artifacts and model are logged, before the version exists",
    "register.versioned": "after the model version is created, before the run is closed",
}
ENV = "LETHE_FAILPOINT"


def armed() -> set[str]:
    """The failpoints named in the environment (unknown names are an error)."""
    names = {n.strip() for n in os.environ.get(ENV, "").split(",") if n.strip()}
    unknown = names - FAILPOINTS.keys()
    if unknown:
        raise ValueError(f"unknown {ENV} {sorted(unknown)}; known: {sorted(FAILPOINTS)}")
    return names


def reach(name: str) -> None:
    """SIGKILL this process (and its group, when it leads one) if `name` is armed."""
    if name not in FAILPOINTS:
        raise ValueError(f"unknown failpoint {name!r}")
    if name not in armed():
        return
    if os.getpgrp() == os.getpid():
        os.killpg(os.getpid(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)
