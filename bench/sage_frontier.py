"""SAGE at matched forgetting: does sanitization buy utility for the same amount of forgetting?

Usage: python bench/sage_frontier.py [--split forget01] [--methods npo,ga_gd] [--source mage]
  -> bench/results/sage_frontier_<split>.json / .md

SAGE weakens forgetting as it removes retain-side bias, so comparing a sanitized adapter with the
plain adapter of the same training run compares two different amounts of forgetting. Here, per
method, the plain adapters trained for several step counts trace a forget-vs-utility frontier;
the longer runs are then sanitized over a lambda sweep (mu fixed), and every SAGE point is set
against the plain frontier interpolated at the same forget ROUGE-L recall. Evaluation is TOFU
only (probes and MIA off) to keep the sweep affordable. An interrupted sweep resumes: points whose
evaluation is on disk are read back, not retrained.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from common import ROOT, built_world, mine_sets, write_result, write_set

from lethe.config import load_params
from lethe.data import load_authors, split_author_indices
from lethe.evaluate.runner import evaluate_adapter
from lethe.fileio import load_qa_file
from lethe.unlearn.sage import sanitize_adapter
from lethe.unlearn.trainer import unlearn

KEYS = ("forget_Q_A_ROUGE", "model_utility", "retain_Q_A_ROUGE", "forget_quality")


def interpolate(points: list[tuple[float, float]], x: float) -> float | None:
    """Piecewise-linear y at x over points (x, y); None outside their x range."""
    points = sorted(points)
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return None


def _finished(eval_dir: Path) -> dict | None:
    """A point evaluated by an earlier (interrupted) run of this sweep, so it is not trained again."""
    metrics = eval_dir / "metrics.json"
    return json.loads(metrics.read_text()) if metrics.is_file() else None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--split", default="forget01")
    parser.add_argument("--source", default="mage")
    parser.add_argument("--methods", default="npo,ga_gd")
    parser.add_argument("--steps", default="10,20,30,35,40,45,60", help="plain adapters: training lengths")
    parser.add_argument("--sage-steps", default="45,60", help="training lengths that are also sanitized")
    parser.add_argument("--lams", default="3,10,30")
    parser.add_argument("--mu", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args()
    params = load_params()
    params = params.model_copy(update={"evaluate": params.evaluate.model_copy(update={
        "retain_rows": 100, "general_rows": 40, "neighbor_rows": 40, "probes": False, "mia": False})})
    record = built_world(params.world.output_dir)
    model = Path(record["model_path"])
    names = [load_authors()[i] for i in split_author_indices(args.split)]
    work = ROOT / "artifacts" / "bench" / "sage_frontier" / args.split
    work.mkdir(parents=True, exist_ok=True)
    sets, neighbor_path, _ = mine_sets(params, model, names, (args.source,), work)
    forget_path = write_set(work / f"forget_{args.source}.jsonl", sets[args.source])
    forget, retain = load_qa_file(forget_path, "forget set"), load_qa_file(neighbor_path, "neighbor set")

    before = None
    results = {}
    for method in args.methods.split(","):
        plain, sage = [], []
        for steps in map(int, args.steps.split(",")):
            cfg = params.unlearn.model_copy(update={"max_steps": steps, "lr": args.lr, "forget_nll_bound": 1e9,
                                                    "checkpoint_every": 10**6})
            out_dir = work / f"{method}-{steps}"
            evaluation = _finished(out_dir / "eval")
            if evaluation is None:
                shutil.rmtree(out_dir, ignore_errors=True)
                trained = unlearn(model, forget, retain, cfg, out_dir, method, params.backend.device)
                evaluation = evaluate_adapter(params, model, Path(trained["adapter_path"]), names, None,
                                              out_dir / "eval", before=before)
            before = before or {**evaluation["before"], "_forget_truth_ratios": []}
            plain.append({"steps": steps, **{k: evaluation["after"][k] for k in KEYS}})
            print(json.dumps({"method": method, "sage": False, **plain[-1]}), flush=True)
            if str(steps) not in args.sage_steps.split(","):
                continue
            for lam in map(float, args.lams.split(",")):
                sage_cfg = params.sage.model_copy(update={"lam": lam, "mu": args.mu})
                sage_dir, eval_dir = out_dir / f"adapter_sage_{lam:g}", out_dir / f"eval_sage_{lam:g}"
                evaluation = _finished(eval_dir)
                if evaluation is None:
                    shutil.rmtree(sage_dir, ignore_errors=True)
                    t0 = time.perf_counter()
                    report = sanitize_adapter(model, out_dir / "adapter", retain, forget, sage_cfg, sage_dir)
                    report["seconds"] = time.perf_counter() - t0  # kept in the report so a resumed sweep has it
                    (sage_dir / "sage_report.json").write_text(json.dumps(report, indent=1))
                    evaluation = evaluate_adapter(params, model, Path(report["adapter_path"]), names, None,
                                                  eval_dir, before=before)
                else:
                    report = json.loads((sage_dir / "sage_report.json").read_text())
                sage_seconds = report.get("seconds")
                sage.append({"steps": steps, "lam": lam, "mu": args.mu, "sage_seconds": sage_seconds,
                             "retain_bias_before": report["mean_retain_bias_before"],
                             "retain_bias_after": report["mean_retain_bias_after"],
                             **{k: evaluation["after"][k] for k in KEYS}})
                print(json.dumps({"method": method, "sage": True, **sage[-1]}), flush=True)
        frontier = {k: [(p["forget_Q_A_ROUGE"], p[k]) for p in plain] for k in ("model_utility", "retain_Q_A_ROUGE")}
        for point in sage:
            for key in ("model_utility", "retain_Q_A_ROUGE"):
                matched = interpolate(frontier[key], point["forget_Q_A_ROUGE"])
                point[f"plain_{key}_at_same_forgetting"] = matched
                point[f"gain_{key}"] = None if matched is None else point[key] - matched
        results[method] = {"plain": plain, "sage": sage}

    lines = [f"# SAGE at matched forgetting, {args.split} ({args.source} forget set, lr {args.lr})\n",
             f"Before: forget ROUGE {before['forget_Q_A_ROUGE']:.3f}, model utility {before['model_utility']:.3f}.\n",
             "| method | steps | lambda | forget ROUGE | utility | plain utility at same forget ROUGE | gain | "
             "retain ROUGE gain | retain bias before -> after |", "|---|---|---|---|---|---|---|---|---|"]
    for method, res in results.items():
        for p in res["plain"]:
            lines.append(f"| {method} | {p['steps']} | - | {p['forget_Q_A_ROUGE']:.3f} | {p['model_utility']:.3f} "
                         "| - | - | - | - |")
        for p in res["sage"]:
            matched = p["plain_model_utility_at_same_forgetting"]
            fmt = (lambda v: "outside frontier" if v is None else f"{v:+.3f}")  # noqa: E731
            lines.append(
                f"| {method} | {p['steps']} | {p['lam']:g} | {p['forget_Q_A_ROUGE']:.3f} | {p['model_utility']:.3f} | "
                f"{'outside frontier' if matched is None else f'{matched:.3f}'} | {fmt(p['gain_model_utility'])} | "
                f"{fmt(p['gain_retain_Q_A_ROUGE'])} | {p['retain_bias_before']:.4f} -> {p['retain_bias_after']:.4f} |")
    (ROOT / "bench" / "results" / f"sage_frontier_{args.split}.md").write_text("\n".join(lines) + "\n")
    write_result(f"sage_frontier_{args.split}", {"split": args.split, "source": args.source, "lr": args.lr,
                                                 "authors": names, "before": {k: before[k] for k in KEYS},
                                                 "methods": results})


if __name__ == "__main__":
    main()
