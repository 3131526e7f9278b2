"""The compliance run's fan-out on Dask: the same queue processed with 1 worker and with 2 workers.

A small world (the tiny world's settings with 5 retain + 2 forget authors, built once) has every
author queued as a request: 7 pending requests on one model. Each side starts from an empty queue
and registry (its own local stack) and runs one `lethe compliance-run`: the queue mined ahead on
Dask, the requests chained one after another (each promoted), then the champion re-audited on Dask
for every forgotten entity. Side one: scale.workers 1 x 1 thread; side two: 2 x 1.

Reported: each phase's seconds (mining ahead, the serial requests and, inside them, their
evaluations, whose shards fan out on the run's one cluster, the audit, the whole command),
the speed-ups, and whether both sides did the same thing: the same gate decisions, the same adapters
(content hashes), the same audit rows, the same ledger events (ids, times and workers aside).

The method is not under measure here: the gate is relaxed so that every request promotes (on a
world this small the real audit rejects them all).

    python bench/compliance_fanout.py
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml
from common import ROOT, fresh_request_root, run_lethe, stack_up_unscheduled, write_result

RELAXED_GATE = {"max_forget_ratio": 1.0, "max_heldout_ratio": 1.0, "max_reelicit_excess": 1.0,
                "max_reelicit_return": 1.0, "max_relearn_gap": 1.0, "max_relearn_share": 100.0,
                "max_relearn_recovery": 10.0, "min_utility_ratio": 0.0, "min_utility_part_ratio": 0.0, "min_entity_retention": 0.0,
                "min_forget_quality": 0.0}
SIZE = "fanout"
AUTHORS = "0-4,198-199"  # 5 retain + the 2 forget01 authors: 7 requests


def _side_params(workers: int, ports: tuple[int, int]) -> Path:
    root = fresh_request_root(f"compliance_fanout_{workers}w", *ports)
    path = root / "params.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["world"]["sizes"][SIZE] = {**copy.deepcopy(raw["world"]["sizes"]["tiny"]), "authors": AUTHORS}
    raw["gate"].update(RELAXED_GATE)
    raw["scale"].update(workers=workers, threads_per_worker=1, mine_ahead=True)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _adapter_hash(adapter: str | None) -> str | None:
    """The adapter's weights (its adapter_config.json lists the target modules as a set, in the order
    of the process's hash seed, so the folder's bytes differ between identical trainings)."""
    if not adapter:
        return None
    return hashlib.sha256((Path(adapter) / "adapter_model.safetensors").read_bytes()).hexdigest()[:16]


def _shard_workers(params: Path, processed: dict) -> list[str]:
    """Which workers measured a request's evaluation shards (its evaluation.json)."""
    from lethe.layout import RequestLayout

    if not processed.get("workdir"):
        return []
    record = RequestLayout(Path(processed["workdir"])).evaluation_dir / "evaluation.json"
    return list(json.loads(record.read_text())["evaluation"].get("shards", {}).values()) if record.is_file() else []


def _side(workers: int, ports: tuple[int, int]) -> dict:
    """One compliance run over the whole queue, on a fresh stack; what it did and how long it took."""
    from lethe.ops.queue import RequestQueue

    params = _side_params(workers, ports)
    world = run_lethe(params, "world", "build", "--size", SIZE)
    stack_up_unscheduled(params)
    try:
        for author in world["authors"]:
            run_lethe(params, "request", "add", author["name"], "--model", world["model_path"], "--requester", "bench",
                   "--reason", "fan-out")
        started = time.perf_counter()
        run = run_lethe(params, "compliance-run", "--model", world["model_path"])
        whole = time.perf_counter() - started
    finally:
        subprocess.run([sys.executable, "-m", "lethe", "stack", "down", "--params", str(params)], cwd=ROOT,
                       capture_output=True, check=False)
    queue = RequestQueue(f"sqlite:///{params.parent / 'queue.db'}")
    anchors = {r.id: r.anchor for r in queue.list()}
    return {
        "whole_seconds": whole, "mining_ahead_seconds": run["mining_ahead_seconds"],
        "requests_seconds": run["requests_seconds"], "audit_seconds": run["audit_seconds"],
        # the requests' evaluations (their shards fan out on the run's cluster), inside requests_seconds
        "evaluation_seconds": sum(p.get("evaluation_seconds") or 0.0 for p in run["processed"]),
        "evaluated_by": sorted({w for p in run["processed"] for w in _shard_workers(params, p)}),
        "mined_by": sorted({row.get("mined_by", "-") for row in run["mined_ahead"]}),
        "audited_by": sorted({row["audited_by"] for row in run["audit"]["entities"]}),
        "outcomes": [{"anchor": p["anchor"], "status": p["status"], "promoted": p.get("promoted"),
                      "gate": (p.get("gate") or {}).get("status"), "adapter": _adapter_hash(p.get("adapter_path"))}
                     for p in run["processed"]],
        "mining": [{k: row.get(k) for k in ("anchor", "status", "seconds")} for row in run["mined_ahead"]],
        "audit_rows": [{k: v for k, v in row.items() if k not in ("audited_by", "request_id")}
                       for row in run["audit"]["entities"]],
        "ledger": [(anchors.get(e["request_id"], "-"), e["event"]) for e in queue.audit_log()],
    }


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    sides = {workers: _side(workers, ports) for workers, ports in ((1, (5091, 5092)), (2, (5095, 5096)))}
    one, two = sides[1], sides[2]
    phases = ("mining_ahead_seconds", "evaluation_seconds", "audit_seconds")
    speedup = {phase: one[phase] / two[phase] if two[phase] else None
               for phase in (*phases, "requests_seconds", "whole_seconds")}
    write_result("compliance_fanout", {
        "world": {"size": SIZE, "authors": AUTHORS}, "requests": len(one["outcomes"]),
        "speedup_2_workers": speedup,
        # the phases that fan out: mining ahead, the requests' evaluations, the re-audit
        "fan_out_phases_speedup": sum(one[p] for p in phases) / sum(two[p] for p in phases),
        "identical": {"outcomes": one["outcomes"] == two["outcomes"], "ledger": one["ledger"] == two["ledger"],
                      "audit_rows": one["audit_rows"] == two["audit_rows"]},
        "sides": {"1_worker": one, "2_workers": two}})


if __name__ == "__main__":
    main()
