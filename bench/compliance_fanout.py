"""The compliance run's fan-out on Dask: the champion's re-audit with 1 worker against 2 workers.

On a world (tiny by default), every author is queued as a request and one `lethe compliance-run`
processes them in a chain (each promoted, so each entity joins the audit), its audit on 1 Dask
worker. Then the same champion is re-audited by two more compliance runs with no request left:
2 workers x 1 thread, then 1 x 1 again (so both sides start a fresh cluster and load the models
cold). Reported: the serial request phase, each audit's seconds, the speed-up, and whether the
2-worker rows equal the 1-worker rows.

The method is not under measure here: the gate is relaxed so that every request promotes (on the
tiny world the real audit rejects them all).

    python bench/compliance_fanout.py [--size tiny]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml
from common import ROOT, fresh_request_root, write_result

RELAXED_GATE = {"max_forget_ratio": 1.0, "max_heldout_ratio": 1.0, "max_reelicit_excess": 1.0, "max_relearn_gap": 1.0,
                "max_relearn_recovery": 10.0, "min_utility_ratio": 0.0, "min_utility_part_ratio": 0.0,
                "min_entity_retention": 0.0, "min_forget_quality": 0.0}


def _lethe(root: Path, *args: str) -> dict:
    argv = [sys.executable, "-m", "lethe", *args, "--params", str(root / "params.yaml"), "--json"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    (root / f"{args[0]}.stderr.log").open("a").write(done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"lethe {' '.join(args)} failed: {done.stderr[-1500:]}")
    return json.loads(done.stdout)


def _set_workers(root: Path, workers: int) -> None:
    path = root / "params.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["scale"].update(workers=workers, threads_per_worker=1)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))


def _rows(run: dict) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "audited_by"} for row in run["audit"]["entities"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="tiny")
    args = parser.parse_args()
    world = _lethe_world(args.size)
    root = fresh_request_root("compliance_fanout", 5091, 5092)
    raw = yaml.safe_load((root / "params.yaml").read_text())
    raw["gate"].update(RELAXED_GATE)
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    _set_workers(root, 1)
    model = world["model_path"]
    _lethe(root, "stack", "up")
    try:
        for author in world["authors"]:
            _lethe(root, "request", "add", author["name"], "--model", model, "--requester", "bench", "--reason", "fan-out")
        started = time.perf_counter()
        chained = _lethe(root, "compliance-run", "--model", model)
        whole = time.perf_counter() - started
        audits = {}
        for workers in (2, 1):
            _set_workers(root, workers)
            audits[workers] = _lethe(root, "compliance-run", "--model", model)
    finally:
        subprocess.run([sys.executable, "-m", "lethe", "stack", "down", "--params", str(root / "params.yaml")],
                       cwd=ROOT, capture_output=True, check=False)
    one, two = audits[1]["audit_seconds"], audits[2]["audit_seconds"]
    write_result(f"compliance_fanout_{args.size}", {
        "size": args.size, "requests": len(chained["processed"]),
        "statuses": [p["status"] for p in chained["processed"]], "entities_audited": len(_rows(audits[1])),
        "chained_run_seconds": whole, "chained_run_audit_seconds_1_worker": chained["audit_seconds"],
        "audit_seconds": {"1_worker": one, "2_workers": two}, "audit_speedup": one / two,
        "workers_seen_with_2": sorted({r["audited_by"] for r in audits[2]["audit"]["entities"]}),
        "rows_identical": _rows(audits[1]) == _rows(audits[2]),
        "rows": {"1_worker": _rows(audits[1]), "2_workers": _rows(audits[2])}})


def _lethe_world(size: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "lethe", "world", "build", "--size", size, "--json"], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


if __name__ == "__main__":
    main()
