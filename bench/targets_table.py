"""Issue 13's targets against stored audit results: the README's "where it stands" table, recomputed.

Each group is a label and bench/audit.py result files; the table gives, per target measure, the range
(and median) over the group's requests. A group given with --passed keeps only the requests the gate
passed. Prints the Markdown table and writes bench/results/targets_<name>.json.

    python bench/targets_table.py --name s54 \
        --group "default, stop 53" bench/results/audit_forget05_single_s53_split.json \
        --passed "passed, stops 47-48" bench/results/audit_forget01_single_s4[78]_*.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import Counter
from pathlib import Path

from common import write_result

# (request key, what it is, the target)
TARGETS = (
    ("gold_ratio", "gold forget ROUGE after / before", "<= 0.25x"),
    ("heldout_ratio", "held-out probes after / before", "<= 0.3x, or of the recall above never-trained"),
    ("reelicit_return", "re-elicitation: strong memories back", "<= never-trained + 0.1"),
    ("relearn_gap_gold_novel", "relearning gap, gold tokens the attack did not teach", "<= 0.10"),
    ("relearn_gap_heldout_novel", "relearning gap, held-out tokens the attack did not teach", "<= 0.10"),
    ("q4_gold_ratio", "4-bit rounded: gold after / before", "<= 0.3x"),
    ("mia_min_k_plus_plus_auc", "MIA min-k%++ AUC, forget vs holdout", "<= 0.70"),
    ("forget_quality", "TOFU forget quality", ">= 0.10 on forget01"),
    ("utility_vs_base", "model utility vs base", ">= 0.95x"),
    ("weakest_other_entity", "weakest other author vs base", ">= 0.80x, a gate check"),
    ("seconds", "seconds a request, audit included, 2 cores", "<= 180"),
)


def _value(request: dict, key: str) -> float | None:
    value = request.get(key)
    if key == "weakest_other_entity" and value:
        value = value[1]
    return float(value) if isinstance(value, (int, float)) else None


def _requests(path: Path) -> list[dict]:
    """A result file's requests. A bench/regate.py re-judgement's seconds time its evaluation alone, so each
    of its requests takes the seconds of the request it re-judged (None where that run is not stored)."""
    result = json.loads(path.read_text())
    if "regated" not in result:
        return result["requests"]
    judged = path.parent / f"{result['regated']}.json"
    seconds = {r["anchor"]: r.get("seconds") for r in json.loads(judged.read_text())["requests"]} \
        if judged.is_file() else {}
    return [{**request, "seconds": seconds.get(request["anchor"])} for request in result["requests"]]


def value_range(values: list[float | None]) -> dict | None:
    """min / median / max / n of the known values; None when there are none."""
    known = [v for v in values if v is not None]
    if not known:
        return None
    return {"min": round(min(known), 4), "median": round(statistics.median(known), 4),
            "max": round(max(known), 4), "n": len(known)}


def summarize_group(requests: list[dict]) -> dict:
    """The group's request and pass counts, failed checks, and each target measure's range."""
    return {"requests": len(requests),
            "passed": sum(r.get("gate") == "passed" for r in requests),
            "anchors": sorted({r["anchor"] for r in requests}),
            "failed_checks": dict(Counter(c for r in requests for c in r.get("failed_checks", [])).most_common()),
            "measures": {key: value_range([_value(r, key) for r in requests]) for key, _, _ in TARGETS}}


def _cell(spread: dict | None, key: str) -> str:
    if spread is None:
        return "-"
    digits = 0 if key == "seconds" else 2
    low, high = f"{spread['min']:.{digits}f}", f"{spread['max']:.{digits}f}"
    text = low if low == high else f"{low}-{high}"
    return text + (f", median {spread['median']:.{digits}f}" if spread["n"] > 2 else "")


def markdown(groups: dict[str, dict]) -> str:
    """The table: a row per target measure, a column per group."""
    labels = list(groups)
    head = ["measure (target)"] + [f"{label}: {g['passed']} of {g['requests']} passed" for label, g in groups.items()]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, what, target in TARGETS:
        cells = [_cell(groups[label]["measures"][key], key) for label in labels]
        lines.append(f"| {what} ({target}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="written to bench/results/targets_<name>.json")
    parser.add_argument("--group", nargs="+", action="append", default=[], metavar=("LABEL", "FILE"),
                        help="a column: its label, then bench/audit.py result files")
    parser.add_argument("--passed", nargs="+", action="append", default=[], metavar=("LABEL", "FILE"),
                        help="a column of only the requests the gate passed")
    args = parser.parse_args()
    specs = [(spec, False) for spec in args.group] + [(spec, True) for spec in args.passed]
    if not specs or any(len(spec) < 2 for spec, _ in specs):
        parser.error("give at least one --group LABEL FILE [FILE ...]")
    groups, files = {}, {}
    for (label, *paths), passed_only in specs:
        requests = [r for path in paths for r in _requests(Path(path))
                    if not passed_only or r.get("gate") == "passed"]
        groups[label], files[label] = summarize_group(requests), paths
    table = markdown(groups)
    print(table)
    write_result(f"targets_{args.name}", {"command": "python bench/targets_table.py " + " ".join(
        f"--{'passed' if passed else 'group'} '{spec[0]}' " + " ".join(spec[1:]) for spec, passed in specs),
        "files": files, "groups": groups, "markdown": table})


if __name__ == "__main__":
    main()
