"""Forgotten means gone: every request of a split judged by the audit, alone or chained.

For each author of the split, one request as the pipeline runs it (without the servers: mining,
unlearning with the adaptive budget, evaluation + audit, the gate). `--mode single` starts every
request from the base model; `--mode chained` starts each from the champion, which moves only when
the gate passes (as `lethe compliance-run` does); `--mode batch` forgets them all in one batched
request (one adapter, one gate; `lethe compliance-run --batch`). The JSON records, per request: gold forget ROUGE
after/before, held-out probes, re-elicitation vs the never-trained reference, the relearning gap,
4-bit rounding, MIA, forget quality, utility vs the original base, the weakest other entity, the
gate's decision and the wall time; after a chain, the final champion on every author.

    python bench/audit.py --split forget01 --mode single
    python bench/audit.py --split forget05 --mode chained --tag chained
    python bench/audit.py --split forget05 --mode batch
    python bench/audit.py --split forget05 --mode chained --chain-on-keeping --tag keeping   # how requests compound
    python bench/audit.py --split forget01 --set unlearn.method=ga_gd --set unlearn.max_steps=120 --tag ga_gd
    python bench/audit.py --split forget01 --author "Nikolai Abilov" --tag nikolai            # one author of the split
    python bench/audit.py --split forget01 --params profiles/thorough.yaml --tag thorough     # a params overlay
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

from common import ROOT, assign, write_result

from lethe.config import Params, load_params


def _override(params: Params, assignments: list[str]) -> Params:
    return Params.model_validate(assign(params.model_dump(mode="json", by_alias=True), assignments))


def _row(anchor: str, ev: dict, decision, seconds: float, trained: dict, spared: Sequence[str] = ()) -> dict:
    """One request's figures; `spared` (earlier targets of a chain, a batch's members) are no "other author"."""
    before, after, reference = ev["before"], ev["after"], ev["reference"]

    def ratio(key, b=before, a=after):
        return a[key] / b[key] if a.get(key) is not None and b.get(key) else None

    path = trained.get("budget_path", [])  # [step, dev recall, utility proxy ratio] per budget point
    entities = {k: v / after["base_entity_rouge"][k] for k, v in after.get("entity_rouge", {}).items()
                if after.get("base_entity_rouge", {}).get(k) and k != anchor and k not in spared}
    return {
        "anchor": anchor, "seconds": round(seconds, 1), "steps": trained["steps"], "chosen_step": trained.get("chosen_step"),
        "stopped_by": trained["stopped_by"], "budget_met": trained.get("budget_met"),
        "dev_floor": path[0].get("dev_floor") if path else None,  # the never-trained model's dev recall
        "budget_path": [[p["step"], round(p["dev_rouge"], 4), round(p.get("utility_ratio", 1.0), 4)] for p in path],
        # the training rows' facts still held, after / before, where unlearn.stop_train_ratio checks them
        "budget_train_ratio": [[p["step"], round(p["train_ratio"], 4)] for p in path if "train_ratio" in p],
        # the budget's relearning check where it ran (unlearn.stop_relearn_gap): [step, dev gap, share, passed]
        "budget_relearn": [[p["step"], round(p["dev_relearn_gap"], 4), p.get("dev_relearn_share"), p["relearn_ok"]]
                           for p in path if "dev_relearn_gap" in p],
        "dev_relearn_margin": path[0].get("dev_relearn_margin") if path else None,
        "gold_ratio": ratio("forget_Q_A_ROUGE"), "heldout_ratio": ratio("heldout_rouge"),
        "heldout": [before.get("heldout_rouge"), after.get("heldout_rouge"), reference.get("heldout_rouge")],
        "heldout_probe_count": after.get("heldout_probe_count"),  # the gate's floor: gate.min_heldout_probes
        "heldout_facts": [before.get("heldout_facts"), after.get("heldout_facts"), reference.get("heldout_facts")],
        "heldout_stated_before": before.get("heldout_stated"),
        "reelicit_return": after.get("reelicit_return"), "reelicit_reference": reference.get("reelicit_return"),
        "relearn_gap_heldout": _gap(after, reference, "heldout"),
        "relearn_gap_heldout_interval": _gap_interval(after, reference, "heldout"),
        "relearn_gap_gold": _gap(after, reference, "gold"),
        "relearn_gap_heldout_novel": _gap(after, reference, "heldout", "novel"),
        "relearn_gap_heldout_novel_interval": _gap_interval(after, reference, "heldout", "novel"),
        "relearn_gap_gold_novel": _gap(after, reference, "gold", "novel"),
        "relearn_gold": [after.get("relearn_gold_rouge"), reference.get("relearn_gold_rouge")],
        "q4_gold_ratio": ratio("q4_gold_rouge"),  # 4-bit unlearned vs 4-bit starting model
        "q4_gold_vs_unrounded_before": (after["q4_gold_rouge"] / before["forget_Q_A_ROUGE"]
                                        if after.get("q4_gold_rouge") is not None and before.get("forget_Q_A_ROUGE")
                                        else None),
        "mia_min_k_plus_plus_auc": after.get("mia_min_k_plus_plus_auc"), "privleak": after.get("privleak"),
        "forget_quality": after.get("forget_quality"),
        "utility_vs_base": after["model_utility"] / ev["base"]["model_utility"],
        "weakest_other_entity": min(entities.items(), key=lambda kv: kv[1]) if entities else None,
        "mean_other_entity": sum(entities.values()) / len(entities) if entities else None,
        "entity_recognition": next(([c.value, c.note] for c in decision.checks if c.name == "entity_recognition"),
                                   None),  # the gate's row: weakest ratio to the base, and whom
        "gate": decision.status, "failed_checks": [r.split(":")[0] for r in decision.reasons],
    }


def evaluation_seconds(ev: dict) -> dict[str, float]:
    """Where the evaluation's time went: the suite per side, the audit per model and part."""
    from lethe.evaluate.metrics import AUDIT_PART_SECONDS, AUDIT_SECONDS

    out = {f"suite_{side}": ev[side]["eval_seconds"] for side in ("before", "after") if "eval_seconds" in ev[side]}
    for model in ("before", "after", "reference"):
        for name, key in {"all": AUDIT_SECONDS, **AUDIT_PART_SECONDS}.items():
            if ev[model].get(key) is not None:
                out[f"audit_{model}_{name}"] = ev[model][key]
    return {k: round(v, 1) for k, v in out.items()}


def _gap(after: dict, reference: dict, probes: str, tokens: str = "all") -> float | None:
    """The relearning gap on `probes`: the largest at a learning rate both models were attacked at; in
    ROUGE-L (`tokens` "all") or in the tokens the attack did not teach ("novel", the gate's default)."""
    from lethe.evaluate.metrics import RELEARNED, RELEARNED_NOVEL
    from lethe.ops.gate import relearning_gap

    key = (RELEARNED if tokens == "all" else RELEARNED_NOVEL)[probes]
    if after.get(key) is None or reference.get(key) is None:
        return None
    return relearning_gap(after, reference, probes, tokens)[0]


def _gap_interval(after: dict, reference: dict, probes: str, tokens: str = "all") -> list[float] | None:
    """The 90% paired bootstrap interval over the probes of that relearning gap."""
    if _gap(after, reference, probes, tokens) is None:
        return None
    from lethe.ops.gate import relearning_gap, relearning_gap_interval

    lr = relearning_gap(after, reference, probes, tokens)[3]
    interval = relearning_gap_interval(after, reference, probes, lr, tokens=tokens)
    return [round(interval[0], 4), round(interval[1], 4)] if interval else None


KEEPING_CHECKS = ("utility", "utility_parts", "entity_retention")


def advances(decision, keeping_only: bool) -> bool:
    """Whether the chain moves on: the gate passed, or (`keeping_only`, a what-if for measuring how
    requests compound) every check of what must be kept passed, whatever the forgetting checks said."""
    if decision.passed or not keeping_only:
        return decision.passed
    return all(c.passed is not False for c in decision.checks if c.name in KEEPING_CHECKS)


def run(params: Params, model: Path, anchors: list[str], work: Path, chained: bool,
        keeping_only: bool = False) -> tuple[list[dict], list, list]:
    from lethe.mage import MagePipeline, Request, request_slug
    from lethe.ops.compose import chain_key, compose
    from lethe.ops.gate import REQUIRED_LINEAGE, decide
    from lethe.ops.request_steps import RequestPlan, evaluate_step, unlearn_step

    chain, forgotten, rows = [], [], []
    for anchor in anchors:
        started = time.perf_counter()
        start = compose(model, chain, work / "_composed")
        workdir = work / request_slug(anchor) / (f"from-{chain_key(chain)}" if chain else "from-base")
        plan = RequestPlan(f"bench-{request_slug(anchor)}", anchor, None, str(model), str(start), "bench",
                           str(workdir), "", "", None, list(chain), list(forgotten))
        phases = {"start": time.perf_counter() - started}
        mined = MagePipeline(Request(anchor, str(start.resolve())), plan.mine_dir, params).run()
        phases["mine"] = time.perf_counter() - started - sum(phases.values())
        if mined["status"] != "validated":
            rows.append({"anchor": anchor, "status": mined["status"]})
            continue
        trained = unlearn_step(params, plan)
        phases["unlearn"] = time.perf_counter() - started - sum(phases.values())
        evaluation = evaluate_step(params, plan, trained["adapter_path"])
        phases["evaluate"] = time.perf_counter() - started - sum(phases.values())
        decision = decide(evaluation["before"], evaluation["after"], evaluation["base"], evaluation["reference"],
                          mined["validation"]["success"], {k: "x" for k in REQUIRED_LINEAGE}, params.gate,
                          spared=[anchor, *forgotten])
        row = _row(anchor, evaluation, decision, time.perf_counter() - started, trained, forgotten)
        row["phase_seconds"] = {**{k: round(v, 1) for k, v in phases.items()}, **evaluation_seconds(evaluation)}
        row["start_chain"] = len(chain)
        rows.append(row)
        print(json.dumps(row, default=str), flush=True)
        row["advanced_chain"] = chained and advances(decision, keeping_only)
        if row["advanced_chain"]:
            chain.append(str(Path(trained["adapter_path"]).resolve()))
            forgotten.append(anchor)
    return rows, chain, forgotten


def run_batch(params: Params, model: Path, anchors: list[str], work: Path) -> tuple[list[dict], list, list]:
    """Every anchor as a member of one batched request (lethe.ops.batch): each mined alone from the base,
    one adapter on the merged sets (unlearn.max_steps per member), each member evaluated and audited on
    it, one gate over all. Rows: one per member, each with the batch's decision."""
    from dataclasses import replace

    from lethe.mage import MagePipeline, Request, request_slug
    from lethe.ops.batch import batch_id, batch_params, merge_supervision
    from lethe.ops.gate import REQUIRED_LINEAGE, decide_batch, entity_label
    from lethe.ops.request_steps import RequestPlan, evaluate_step, unlearn_step

    started = time.perf_counter()
    members = []
    for anchor in anchors:
        plan = RequestPlan(f"bench-{request_slug(anchor)}", anchor, None, str(model), str(model), "bench",
                           str(work / request_slug(anchor) / "from-base"), "", "")
        mined = MagePipeline(Request(anchor, str(model.resolve())), plan.mine_dir, params).run()
        if mined["status"] != "validated":
            raise SystemExit(f"{anchor}: mining ended {mined['status']}; a batch needs every member validated")
        members.append(plan)
    identity = batch_id([m.request_id for m in members])
    batch = replace(members[0], request_id=identity, anchor="; ".join(anchors), workdir=str(work / identity))
    merged = merge_supervision(members, batch.mine)
    trained = unlearn_step(batch_params(params, len(members)), batch)
    evaluations = {m.anchor: evaluate_step(params, m, trained["adapter_path"]) for m in members}
    lead = evaluations[anchors[0]]
    decision = decide_batch({a: (ev["before"], ev["after"], ev["reference"]) for a, ev in evaluations.items()},
                            lead["after"], lead["base"], True, {k: "x" for k in REQUIRED_LINEAGE}, params.gate,
                            spared=anchors)
    seconds = time.perf_counter() - started
    rows = []
    for anchor, ev in evaluations.items():
        row = _row(anchor, ev, decision, seconds, trained, anchors)
        names = [r.split(":")[0] for r in decision.reasons]
        row["failed_checks"] = [n.removesuffix(f" - {entity_label(anchor)}") for n in names
                                if " - " not in n or n.endswith(f" - {entity_label(anchor)}")]
        rows.append({**row, "batch": merged})
        print(json.dumps(row, default=str), flush=True)
    chain = [str(Path(trained["adapter_path"]).resolve())] if decision.passed else []
    return rows, chain, anchors if decision.passed else []


def final_state(params: Params, model: Path, chain: list, forgotten: list, work: Path) -> dict:
    """The last champion on every forgotten author (gold ROUGE) and every other one (retain ROUGE), vs base."""
    from lethe.evaluate.suite import build_plan, evaluate
    from lethe.llm.backend import Backend
    from lethe.ops.compose import compose

    if not chain:
        return {"champion_chain": 0}
    cfg = params.evaluate.model_copy(update={"probes": False, "mia": False})
    out = {"champion_chain": len(chain), "forgotten": forgotten}
    for label, path in (("base", model), ("champion", compose(model, chain, work / "_composed"))):
        backend = Backend.load(path, params.backend.device, params.backend.batch_size)
        metrics = evaluate(backend, build_plan(model, cfg, forgotten), cfg, None)
        out[label] = {k: metrics.get(k) for k in ("forget_Q_A_ROUGE", "model_utility", "retain_Q_A_ROUGE",
                                                   "neighbor_rouge", "entity_rouge")}
    others = {k: v / out["base"]["entity_rouge"][k] for k, v in out["champion"]["entity_rouge"].items()
              if out["base"]["entity_rouge"].get(k)}
    out["other_authors_retain_vs_base"] = {"mean": sum(others.values()) / len(others), "min": min(others.values())}
    out["forget_ratio"] = out["champion"]["forget_Q_A_ROUGE"] / out["base"]["forget_Q_A_ROUGE"]
    out["utility_ratio"] = out["champion"]["model_utility"] / out["base"]["model_utility"]
    return out


def _world_key(model: Path) -> str | None:
    """The build's cache key (parameters, seed, recipe) of a world model; None for any other model."""
    record = model.parent / "world.json"
    return json.loads(record.read_text()).get("cache_key") if record.is_file() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", default="forget01", choices=("forget01", "forget05"))
    parser.add_argument("--mode", default="single", choices=("single", "chained", "batch"))
    parser.add_argument("--size", default="default")
    parser.add_argument("--limit", type=int, default=0, help="only the first N authors of the split")
    parser.add_argument("--author", action="append", default=[], help="only this author of the split (repeatable)")
    parser.add_argument("--set", action="append", default=[], help="params override, e.g. unlearn.max_steps=80")
    parser.add_argument("--tag", default="")
    parser.add_argument("--params", default="", help="a params file other than params.yaml (an overlay included)")
    parser.add_argument("--world", default="", help="a world folder other than artifacts/world/<size> (e.g. one "
                        "built with another world.seed, to measure the spread across builds)")
    parser.add_argument("--chain-on-keeping", action="store_true",
                        help="chained mode, a what-if: the champion moves whenever what must be kept passed "
                             "(utility, its parts, other entities), to measure how requests compound")
    args = parser.parse_args()

    from lethe.data import load_authors, split_author_indices

    name = f"audit_{args.split}_{args.mode}{'_' + args.tag if args.tag else ''}"
    work = ROOT / "artifacts" / "bench" / name
    params = _override(load_params(args.params or None), args.set)
    params = params.model_copy(update={"registry": params.registry.model_copy(update={"workdir": str(work)})})
    model = (Path(args.world) if args.world else ROOT / "artifacts" / "world" / args.size) / "model"
    anchors = [load_authors()[i] for i in split_author_indices(args.split)]
    anchors = anchors[: args.limit] if args.limit else anchors
    if unknown := set(args.author) - set(anchors):
        parser.error(f"not authors of {args.split}: {sorted(unknown)}")
    anchors = [a for a in anchors if a in args.author] if args.author else anchors
    started = time.perf_counter()
    rows, chain, forgotten = (run_batch(params, model, anchors, work) if args.mode == "batch"
                              else run(params, model, anchors, work, args.mode == "chained", args.chain_on_keeping))
    write_result(name, {
        "command": f"python bench/audit.py --split {args.split} --mode {args.mode}"
                   + (f" --params {args.params}" if args.params else "")
                   + "".join(f" --set {s}" for s in args.set) + (f" --tag {args.tag}" if args.tag else "")
                   + (" --chain-on-keeping" if args.chain_on_keeping else "")
                   + "".join(f" --author '{a}'" for a in args.author)
                   + (f" --world {args.world}" if args.world else ""),
        "mode": args.mode, "model": str(model), "world": _world_key(model),
        "overrides": args.set, "unlearn": params.unlearn.model_dump(mode="json"),
        "audit": params.audit.model_dump(mode="json"), "gate": params.gate.model_dump(mode="json"),
        "requests": rows, "final": final_state(params, model, chain, forgotten, work) if args.mode != "single" else None,
        "wall_seconds": round(time.perf_counter() - started, 1)})


if __name__ == "__main__":
    main()
