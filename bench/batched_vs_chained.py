"""Batched against chained requests: the same entities forgotten one request after another (each from
the champion the previous one left) or in one batched request (one adapter, lethe.ops.batch).

Each side starts from an empty queue and registry (its own local stack) on the same world, queues the
same entities and runs one `lethe compliance-run` (`--no-batch` / `--batch`), the queue mined ahead
on Dask in both. Reported per side:

- forgetting of every entity on the final champion, from the run's re-audit (held-out recall, base
  -> champion, and re-elicitation), and from each request's own gate rows (gold ROUGE after/before,
  held-out after/before, the relearning attack against the never-trained reference where one exists);
- what is kept on the final champion: model utility against the base, its weakest part, the weakest
  other author's retain ROUGE (from the last gate);
- wall time: the whole command, mining ahead, the requests, the re-audit; training steps.

The gate is the integration tests' relaxed one (tests/pipeline/local_stack.py): on a world this small
the real audit rejects every request, and the comparison needs both sides to promote.

    python bench/batched_vs_chained.py [--size tiny] [--anchors "A,B,C"]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import yaml
from common import ROOT, fresh_request_root, run_lethe, stack_up_unscheduled, write_result  # common puts the project on sys.path
from tests.pipeline.local_stack import relax_for_pipeline_tests

DEFAULT_ANCHORS = "Basil Mahfouz Al-Kuwaiti,Nikolai Abilov,Jaime Vasquez"  # the tiny world's forget01 + one more


def _side_params(name: str, ports: tuple[int, int]) -> Path:
    root = fresh_request_root(name, *ports)
    path = root / "params.yaml"
    raw = relax_for_pipeline_tests(yaml.safe_load(path.read_text()))
    raw["scale"].update(workers=2, threads_per_worker=1, mine_ahead=True)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _checks(processed: dict) -> dict[str, dict]:
    return {c["name"]: c for c in (processed.get("gate") or {}).get("checks", [])}


def _entity_rows(run: dict, anchors: list[str], batched: bool) -> dict[str, dict]:
    """Per entity: its own gate rows (named `check - entity` in a batch) and the final re-audit."""
    from lethe.ops.gate import entity_label

    audit = {row["anchor"]: row for row in run["audit"]["entities"]}
    rows = {}
    for processed in run["processed"]:
        anchor = processed["anchor"]
        suffix = f" - {entity_label(anchor)}" if batched else ""
        checks = _checks(processed)

        def value(name: str) -> float | None:
            return (checks.get(name + suffix) or {}).get("value")

        final = audit.get(anchor, {})
        rows[anchor] = {
            "status": processed["status"], "model_version": processed.get("model_version"),
            "gold_after_over_before": value("gold_forgetting"),
            "heldout_after_over_before": value("heldout_forgetting"),
            "relearning": value("relearning"), "relearning_note": (checks.get("relearning" + suffix) or {}).get("note"),
            "reelicit_return": value("reelicitation"),
            "final_champion": {k: final.get(k) for k in ("base_recall", "champion_recall", "reelicit_return",
                                                           "forgotten")}}
    return {anchor: rows[anchor] for anchor in anchors if anchor in rows}


def _side(name: str, ports: tuple[int, int], size: str, anchors: list[str], batched: bool) -> dict:
    params = _side_params(name, ports)
    world = run_lethe(params, "world", "build", "--size", size)
    stack_up_unscheduled(params)
    try:
        for anchor in anchors:
            run_lethe(params, "request", "add", anchor, "--model", world["model_path"], "--requester", "bench",
                   "--reason", "batched vs chained")
        started = time.perf_counter()
        run = run_lethe(params, "compliance-run", "--batch" if batched else "--no-batch", "--model", world["model_path"])
        whole = time.perf_counter() - started
    finally:
        subprocess.run([sys.executable, "-m", "lethe", "stack", "down", "--params", str(params)], cwd=ROOT,
                       capture_output=True, check=False)
    last = run["processed"][-1]
    kept = _checks(last)
    return {
        "whole_seconds": whole, "mining_ahead_seconds": run["mining_ahead_seconds"],
        "requests_seconds": run["requests_seconds"], "audit_seconds": run["audit_seconds"],
        "training_steps": sorted({p.get("steps") for p in run["processed"]} if batched
                                 else [p.get("steps") for p in run["processed"]]),
        "versions": sorted({p.get("model_version") for p in run["processed"]}),
        "final_champion": run["audit"]["champion"], "all_forgotten": run["audit"]["all_forgotten"],
        "kept": {"utility_vs_base": (kept.get("utility") or {}).get("value"),
                 "utility": (kept.get("utility") or {}).get("note"),
                 "weakest_utility_part_vs_base": (kept.get("utility_parts") or {}).get("value"),
                 "weakest_utility_part": (kept.get("utility_parts") or {}).get("note"),
                 "weakest_other_author_vs_base": (kept.get("entity_retention") or {}).get("value"),
                 "weakest_other_author": (kept.get("entity_retention") or {}).get("note")},
        "entities": _entity_rows(run, anchors, batched),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="tiny", help="world size (built once, cached)")
    parser.add_argument("--anchors", default=DEFAULT_ANCHORS, help="comma-separated entities to forget")
    args = parser.parse_args()
    anchors = [a.strip() for a in args.anchors.split(",") if a.strip()]
    chained = _side("batched_vs_chained_chained", (5101, 5102), args.size, anchors, batched=False)
    batched = _side("batched_vs_chained_batched", (5105, 5106), args.size, anchors, batched=True)
    write_result("batched_vs_chained", {
        "world": args.size, "anchors": anchors, "gate": "relaxed (tests/pipeline/local_stack.py)",
        "speedup_requests": chained["requests_seconds"] / batched["requests_seconds"],
        "speedup_whole": chained["whole_seconds"] / batched["whole_seconds"],
        "chained": chained, "batched": batched})


if __name__ == "__main__":
    main()
