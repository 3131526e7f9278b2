"""Judge the requests a `bench/audit.py --mode single` run left behind again, under today's audit and gate.

The adapters are not retrained. Each request folder is copied to a new run folder
(`artifacts/bench/<run>_regate[_tag]`), its evaluation runs again (the copied one is deleted) with the
original run's params file (`--params`, else params.yaml), its `--set` overrides and this invocation's
own, and the gate decides. A change to the audit (the relearning
attack's rates, say) is then measured on the very adapters that passed or failed before it, not on new
ones: a retrained request would stop elsewhere, because the budget's relearning check uses the audit's
settings too. Writes `bench/results/<run>_regate[_tag].json` with audit.py's rows (training columns from
each request's unlearn.json) plus, per row, what the original run decided.

    python bench/regate.py --run audit_forget01_single_s43_swap8_r32_seed1
    python bench/regate.py --run audit_forget01_single_s42_swap8_seed1 --set audit.relearn_lr=[0.001] --tag lr1e3
    python bench/regate.py --run audit_forget05_single_s57_thorough_hina_seed2_path --adapter /tmp/avg --tag avg
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import time
from pathlib import Path

from audit import _override, _row, _world_key, evaluation_seconds
from common import RESULTS, ROOT, write_result

from lethe.config import load_params
from lethe.errors import LetheError


def original_params_file(command: str) -> str | None:
    """The params file (`--params`) the original bench/audit.py run read, or None for params.yaml."""
    words = shlex.split(command)
    return words[words.index("--params") + 1] if "--params" in words else None


def regate(run: str, assignments: list[str], tag: str, adapter: Path | None = None) -> dict:
    """Re-evaluate and re-decide every request of bench run `run` (see the module docstring); with
    `adapter`, the run's one request is judged with that adapter in place of the one it trained."""
    from lethe.mage import request_slug
    from lethe.ops.gate import REQUIRED_LINEAGE, decide
    from lethe.ops.request_steps import RequestPlan, evaluate_step

    original = json.loads((RESULTS / f"{run}.json").read_text())
    mode = original.get("mode") or original["command"].split("--mode ")[1].split()[0]  # runs before stop 44
    if mode != "single":
        raise LetheError(f"{run} is not a --mode single run: a chained or batched request starts elsewhere")
    model = Path(original.get("model") or ROOT / "artifacts" / "world" / "default" / "model")
    if original.get("world") and _world_key(model) != original["world"]:
        raise LetheError(f"{run} was trained on world build {original['world']}, but {model} is now build "
                         f"{_world_key(model)}: its adapters belong to another model")
    overrides = [*original["overrides"], *assignments]
    name = f"{run}_regate{'_' + tag if tag else ''}"
    work = ROOT / "artifacts" / "bench" / name
    params_file = original_params_file(original["command"])
    params = _override(load_params(params_file), overrides)
    params = params.model_copy(update={"registry": params.registry.model_copy(update={"workdir": str(work)})})
    if adapter is not None and len(original["requests"]) != 1:
        raise LetheError(f"--adapter replaces one request's adapter, but {run} holds {len(original['requests'])}")
    rows = []
    for before in original["requests"]:
        anchor = before["anchor"]
        source = ROOT / "artifacts" / "bench" / run / request_slug(anchor) / "from-base"
        workdir = work / request_slug(anchor) / "from-base"
        if not workdir.is_dir():
            shutil.copytree(source, workdir)
            # the copied evaluation would be reused (its key holds the settings and inputs, not the code):
            # a change to the audit's code must be measured, not read back
            (workdir / "evaluation" / "evaluation.json").unlink(missing_ok=True)
            if adapter is not None:
                shutil.rmtree(workdir / "unlearn" / "adapter")
                shutil.copytree(adapter, workdir / "unlearn" / "adapter")
        started = time.perf_counter()
        plan = RequestPlan(f"bench-{request_slug(anchor)}", anchor, None, str(model), str(model), "bench",
                           str(workdir), "", "", None, [], [])
        validation = json.loads((plan.mine_dir / "validation" / "validation.json").read_text())
        trained = json.loads((plan.files.unlearn_dir / "unlearn.json").read_text())
        evaluation = evaluate_step(params, plan, str(plan.files.unlearn_dir / "adapter"))
        decision = decide(evaluation["before"], evaluation["after"], evaluation["base"], evaluation["reference"],
                          validation["success"], dict.fromkeys(REQUIRED_LINEAGE, "x"), params.gate, spared=[anchor])
        row = _row(anchor, evaluation, decision, time.perf_counter() - started, trained)
        row["phase_seconds"] = evaluation_seconds(evaluation)
        row["originally"] = {"gate": before.get("gate"), "failed_checks": before.get("failed_checks"),
                             "relearn_gap_gold_novel": before.get("relearn_gap_gold_novel"),
                             "relearn_gap_heldout_novel": before.get("relearn_gap_heldout_novel")}
        rows.append(row)
        print(json.dumps(row, default=str), flush=True)
    return {"name": name, "rows": rows, "overrides": overrides, "params": params}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a bench/results/<run>.json written by bench/audit.py")
    parser.add_argument("--set", action="append", default=[], help="a further params override")
    parser.add_argument("--tag", default="")
    parser.add_argument("--adapter", type=Path, help="judge this adapter folder in place of the run's one request's "
                                                     "(bench/average_checkpoints.py's, say)")
    args = parser.parse_args()
    if args.adapter and not args.tag:
        parser.error("--adapter needs a --tag naming it")
    started = time.perf_counter()
    out = regate(args.run, args.set, args.tag, args.adapter)
    params = out["params"]
    write_result(out["name"], {
        "command": f"python bench/regate.py --run {args.run}" + "".join(f" --set {s}" for s in args.set)
                   + (f" --tag {args.tag}" if args.tag else "")
                   + (f" --adapter {args.adapter}" if args.adapter else ""),
        "regated": args.run, "adapter": str(args.adapter) if args.adapter else None, "overrides": out["overrides"],
        "audit": params.audit.model_dump(mode="json"),
        "gate": params.gate.model_dump(mode="json"), "requests": out["rows"],
        "wall_seconds": round(time.perf_counter() - started, 1)})


if __name__ == "__main__":
    main()
