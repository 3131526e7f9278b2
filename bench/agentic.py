"""SBU on the default world: `lethe agentic-forget` for each forget01 author, in sequence on the same
agent memory (seeded on first use). Writes bench/results/agentic_forget01.json.

    python bench/agentic.py [--authors "Basil Mahfouz Al-Kuwaiti" "Nikolai Abilov"]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

FORGET01 = ["Basil Mahfouz Al-Kuwaiti", "Nikolai Abilov"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--authors", nargs="+", default=FORGET01)
    parser.add_argument("--out", default="bench/results/agentic_forget01.json")
    args = parser.parse_args()
    rows = []
    for anchor in args.authors:
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "lethe", "agentic-forget", anchor, "--json"],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.exit(f"agentic-forget {anchor!r} failed: {done.stdout[-500:]} {done.stderr[-2000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append({"anchor": anchor, "wall_seconds": time.perf_counter() - started,
                     **{k: result[k] for k in ("request_id", "leak_rates", "retain_quality", "retain_quality_ratio",
                                               "sbu_lowest", "rounds", "converged", "total_steps", "probes",
                                               "gate", "model_version", "dvc_md5")}})
        print(json.dumps({"anchor": anchor, "leak_rates": result["leak_rates"],
                          "retain_quality_ratio": result["retain_quality_ratio"]}), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"world": "default", "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
