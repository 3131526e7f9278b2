"""Build time and peak memory of the world sizes (fresh build in a temporary folder).

Usage: python bench/world_build.py [--sizes tiny,default]   -> bench/results/world_build.json
Each size is built in its own process so peak memory is that build's alone.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile

from common import ROOT, write_result

CHILD = """
import json, sys, time
from pathlib import Path
from lethe.config import load_params
from lethe.world.build import build_world
from lethe.llm.backend import Backend
from lethe.world.probe import memorization_report
record = build_world(load_params(), sys.argv[1], force=True, root=Path(sys.argv[2]))
out = {k: record[k] for k in ("build_seconds", "peak_rss_mb", "train")}
for key in ("model_path", "retain_model_path"):
    report = memorization_report(Backend.load(record[key], "cpu"), record["authors"], "holdout05")
    out[key.removesuffix("_path")] = {k: report[k] for k in ("trained_authors", "forget_authors", "retain_authors",
                                                              "holdout_authors")}
print(json.dumps(out))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="tiny,default")
    args = parser.parse_args()
    results = {}
    for size in args.sizes.split(","):
        with tempfile.TemporaryDirectory() as root:
            done = subprocess.run([sys.executable, "-c", CHILD, size, root], capture_output=True, text=True,
                                  cwd=ROOT, check=True)
            results[size] = json.loads(done.stdout.strip().splitlines()[-1])
            print(size, json.dumps({k: v for k, v in results[size].items() if k != "train"}), file=sys.stderr)
    write_result("world_build", {"sizes": results})


if __name__ == "__main__":
    main()
