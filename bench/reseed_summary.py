"""One setting over several training seeds: how often each gate check passes, and the spread of each measure.

Every bench/audit.py row is one training run, and a second `unlearn.seed` can move a measure by more
than the gate's bound (stop 37). This reads the result files of one setting's reseeds (bench/audit.py
run with `--set unlearn.seed=S`, one file each) and writes, per author: the share of seeds whose
request the gate passed, how often each check failed, and min / mean / max of the headline measures.

    python bench/reseed_summary.py bench/results/audit_forget01_single_s38_novel_*_seed{0,1,2}.json --name s38_novel
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from common import write_result

MEASURES = ("gold_ratio", "heldout_ratio", "reelicit_return", "relearn_gap_heldout", "relearn_gap_gold",
            "relearn_gap_heldout_novel", "relearn_gap_gold_novel", "utility_vs_base", "mean_other_entity", "seconds")


def _spread(values: list[float]) -> dict | None:
    known = [v for v in values if v is not None]
    if not known:
        return None
    return {"min": round(min(known), 4), "mean": round(sum(known) / len(known), 4), "max": round(max(known), 4),
            "n": len(known)}


def summarize(results: list[dict]) -> dict[str, dict]:
    """Per anchor: seeds, gate passes, failed-check counts and the measures' spread."""
    by_anchor: dict[str, list[dict]] = {}
    for result in results:
        for request in result["requests"]:
            by_anchor.setdefault(request["anchor"], []).append(request)
    summary = {}
    for anchor, requests in by_anchor.items():
        failed = Counter(check for request in requests for check in request.get("failed_checks", []))
        weakest = [request["weakest_other_entity"][1] for request in requests if request.get("weakest_other_entity")]
        summary[anchor] = {
            "seeds": len(requests),
            "passed": sum(request["gate"] != "rejected" for request in requests),
            "failed_checks": dict(failed.most_common()),
            "measures": {**{key: _spread([request.get(key) for request in requests]) for key in MEASURES},
                         "weakest_other_entity": _spread(weakest)},
        }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path, help="bench/audit.py result files, one per seed")
    parser.add_argument("--name", required=True, help="written to bench/results/reseed_<name>.json")
    args = parser.parse_args()
    results = [json.loads(path.read_text()) for path in args.results]
    seeds = [dict(o.split("=", 1) for o in r.get("overrides", []) if "=" in o).get("unlearn.seed", "0")
             for r in results]
    command = "python bench/reseed_summary.py " + " ".join(map(str, args.results))
    write_result(f"reseed_{args.name}", {"command": command, "files": [str(p) for p in args.results], "seeds": seeds,
                                         "authors": summarize(results)})


if __name__ == "__main__":
    main()
