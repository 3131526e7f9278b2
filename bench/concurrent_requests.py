"""Two requests at once on one machine: do they share the cores instead of fighting over them?

Measures, on the default world, one `lethe forget` alone, then two started together on two
different target models (the world model and its retain model: different registered models, so
the per-model lock does not serialize them and they really compete for the CPU). Training takes
the machine-wide slot (lethe.machine) and sets its torch threads from the cores actually free.
Before that, two such requests on this 2-core machine each ran 2 threads and the second took
953 s against about 90 s alone.

    python bench/concurrent_requests.py [--size default]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, fresh_request_root, stack_up_unscheduled, write_result

ALONE, FIRST, SECOND = "Basil Mahfouz Al-Kuwaiti", "Nikolai Abilov", "Evelyn Desmet"


def _lethe(root: Path, *args: str, background: bool = False):
    argv = [sys.executable, "-m", "lethe", *args, "--params", str(root / "params.yaml"), "--json"]
    process = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return process if background else _finish(process, root, args[1] if len(args) > 1 else args[0])


def _finish(process: subprocess.Popen, root: Path, label: str) -> dict:
    started = time.perf_counter()
    stdout, stderr = process.communicate()
    (root / f"{label.replace(' ', '_')}.stderr.log").write_text(stderr)
    if process.returncode != 0:
        raise SystemExit(f"{label} failed: {stderr[-1500:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["_finish_wait"] = time.perf_counter() - started
    return result


def _training(result: dict) -> dict:
    """Threads, slot wait and training seconds the request's trainer recorded."""
    record = json.loads(next(Path(result["workdir"]).glob("unlearn/unlearn.json")).read_text())
    return {k: record.get(k) for k in ("threads", "slot_wait_seconds", "seconds", "steps")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="default")
    args = parser.parse_args()
    root = fresh_request_root("concurrent_requests", 5085, 5086)
    world = ROOT / "artifacts" / "world" / args.size
    models = world / "model", world / "retain_model"
    stack_up_unscheduled(root / "params.yaml")

    start = time.perf_counter()
    alone = _lethe(root, "forget", ALONE, "--model", str(models[0]))
    alone_wall = time.perf_counter() - start

    start = time.perf_counter()
    first = _lethe(root, "forget", FIRST, "--model", str(models[0]), background=True)
    second = _lethe(root, "forget", SECOND, "--model", str(models[1]), background=True)
    results = [_finish(first, root, FIRST), _finish(second, root, SECOND)]
    both_wall = time.perf_counter() - start
    _lethe(root, "stack", "down")
    write_result("concurrent_requests", {
        "command": "python bench/concurrent_requests.py",
        "alone": {"anchor": ALONE, "wall_seconds": round(alone_wall, 1), "training": _training(alone),
                  "status": alone["status"]},
        "together": {"wall_seconds_both_done": round(both_wall, 1),
                     "requests": [{"anchor": anchor, "model": str(model.relative_to(ROOT)), "status": r["status"],
                                   "training": _training(r)}
                                  for anchor, model, r in zip((FIRST, SECOND), models, results)]},
        "ratio_both_vs_alone": round(both_wall / alone_wall, 2),
        "before_the_slot": {"second_request_seconds": 953, "alone_seconds": 90,
                            "source": "issue 16, measured by the reporter on this kind of machine"},
    })


if __name__ == "__main__":
    main()
