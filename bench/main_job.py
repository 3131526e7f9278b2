"""Wall time of the main job: one full `lethe forget` request on the default world.

Runs the CLI exactly as the README's main command does, but against a fresh registry, queue and
local stack under artifacts/bench/main_job (so earlier requests do not compose into it), and
records the wall time, the per-step times of the Prefect task runs, and the outcome.

    python bench/main_job.py [--anchor NAME] [--size default] [--set backend.batch_size=16 --tag batch16]
    python bench/main_job.py --params profiles/thorough.yaml --tag thorough
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml
from common import ROOT, assign, fresh_request_root, write_result

STEP_LINE = re.compile(r"(\d\d:\d\d:\d\d\.\d+) \| INFO\s+\| Task run '([a-z_]+)-")


def _seconds(stamp: str) -> float:
    h, m, s = stamp.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--anchor", default="Basil Mahfouz Al-Kuwaiti")
    parser.add_argument("--size", default="default")
    parser.add_argument("--set", action="append", default=[], help="params.yaml override, e.g. scale.workers=1")
    parser.add_argument("--tag", default="", help="written to bench/results/main_job_<tag>.json")
    parser.add_argument("--params", default="", help="a params file other than params.yaml (an overlay included)")
    args = parser.parse_args()
    root = fresh_request_root("main_job", 5075, 5076, Path(args.params) if args.params else None)
    raw = yaml.safe_load((root / "params.yaml").read_text())
    (root / "params.yaml").write_text(yaml.safe_dump(assign(raw, args.set), sort_keys=False))
    model = ROOT / "artifacts" / "world" / args.size / "model"
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "lethe", "forget", args.anchor, "--model", str(model),
                           "--params", str(root / "params.yaml"), "--json"], cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    (root / "stderr.log").write_text(done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"lethe forget failed: {done.stderr[-1500:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    stamps = [(m.group(2), _seconds(m.group(1))) for m in STEP_LINE.finditer(done.stderr)]
    steps, previous = {}, None
    flow_start = re.search(r"(\d\d:\d\d:\d\d\.\d+) \| INFO\s+\| Flow run '[^']+' - Beginning", done.stderr)
    previous = _seconds(flow_start.group(1)) if flow_start else None
    for name, stamp in stamps:
        if previous is not None:
            steps[name] = round(stamp - previous, 2)
        previous = stamp
    subprocess.run([sys.executable, "-m", "lethe", "stack", "down", "--params", str(root / "params.yaml")],
                   cwd=ROOT, capture_output=True)
    write_result("main_job" + (f"_{args.tag}" if args.tag else ""), {
        "command": f"lethe forget {args.anchor!r} --model {model.relative_to(ROOT)}"
                   + (f" --params {args.params}" if args.params else ""), "overrides": args.set,
        "wall_seconds": round(wall, 1), "step_seconds": steps,
        "status": result["status"], "gate": result.get("gate", {}).get("checks"),
        "before": result.get("before"), "after": result.get("after"), "model_version": result.get("model_version"),
        "promoted": result.get("promoted"), "note": "includes starting the local stack and Prefect's ephemeral server"})


if __name__ == "__main__":
    main()
