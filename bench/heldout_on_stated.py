"""The gate's held-out check, judged again on the probes the model stated, from stored answers only.

A held-out probe whose facts the starting model does not state greedily tests no memory it says
(`bench/stated_probes.py`); ROUGE-L on it is shared phrasing. For every stored request of the given
`bench/audit.py` runs this reads the answers the evaluation kept (metrics.json `heldout_probes`: the
starting model's, the unlearned model's and the never-trained reference's greedy answer to each
held-out probe), keeps the probes whose facts the starting model stated (`lethe.evaluate.audit.fact_share`
>= audit.stated_min_facts), and applies the gate's held-out rule (lethe.evaluate.floor: forgotten,
blind_at_floor) to their fact recall and to their ROUGE-L. Nothing is run on a model. The gate's
decision on every probe (ROUGE-L) is printed beside it. Writes bench/results/heldout_on_stated[_TAG].json.

    python bench/heldout_on_stated.py artifacts/bench/audit_forget05_single_s49_factscontent
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import write_result

from lethe.config import GateParams, load_params
from lethe.evaluate.audit import fact_share
from lethe.evaluate.floor import blind_at_floor, forgotten
from lethe.rouge import rouge_l_recall

MODELS = ("before", "after", "reference")


def verdict(values: dict[str, float | None], gate: GateParams) -> str:
    """The gate's held-out rule on (before, after, reference) means: pass, fail, or n/a."""
    before, after, reference = (values[m] for m in MODELS)
    if before is None or after is None:
        return "n/a (no probe)"
    margin = gate.heldout_floor_margin
    if forgotten(before, after, reference, margin, gate.max_heldout_ratio):
        return "pass"
    return "n/a (at the floor)" if blind_at_floor(before, after, reference, margin) else "fail"


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def judge(probes: list[dict], min_share: float, gate: GateParams) -> dict:
    """One request's held-out check on every probe (ROUGE-L, as the gate) and on the stated ones."""
    shares = [{m: fact_share(p.get(m) or "", p["question"], p["expected"]) for m in MODELS} for p in probes]
    rouge = [{m: rouge_l_recall(p.get(m) or "", p["expected"]) if m in p else None for m in MODELS}
             for p in probes]
    stated = [i for i, s in enumerate(shares) if s["before"] is not None and s["before"] >= min_share]
    every = {m: _mean([r[m] for r in rouge if r[m] is not None]) for m in MODELS}
    stated_facts = {m: _mean([shares[i][m] or 0.0 for i in stated]) for m in MODELS}
    stated_rouge = {m: _mean([rouge[i][m] for i in stated if rouge[i][m] is not None]) for m in MODELS}
    return {"probes": len(probes), "stated": len(stated), "stated_nodes": sorted({probes[i]["node"] for i in stated}),
            "every_rouge": every, "every_rouge_verdict": verdict(every, gate),
            "stated_facts": stated_facts, "stated_facts_verdict": verdict(stated_facts, gate),
            "stated_rouge": stated_rouge, "stated_rouge_verdict": verdict(stated_rouge, gate)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="bench/audit.py work folders (artifacts/bench/<name>)")
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    params = load_params()
    rows = []
    for run in args.runs:
        for metrics_file in sorted(run.glob("*/from-base/evaluation/metrics.json")):
            work = metrics_file.parent.parent
            probes = json.loads(metrics_file.read_text()).get("heldout_probes") or []
            anchor = json.loads((work / "mine" / "request.json").read_text())["anchor"]
            row = {"run": run.name, "anchor": anchor, **judge(probes, params.audit.stated_min_facts, params.gate)}
            print(f"{run.name} {anchor}: {row['stated']}/{row['probes']} stated; every probe, ROUGE-L: "
                  f"{row['every_rouge_verdict']}; stated, facts: {row['stated_facts_verdict']}; "
                  f"stated, ROUGE-L: {row['stated_rouge_verdict']}", flush=True)
            rows.append(row)
    name = "heldout_on_stated" + (f"_{args.tag}" if args.tag else "")
    write_result(name, {"command": "python bench/heldout_on_stated.py " + " ".join(str(r) for r in args.runs),
                        "stated_min_facts": params.audit.stated_min_facts, "rows": rows})


if __name__ == "__main__":
    main()
