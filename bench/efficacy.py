"""Efficacy table (MAGE paper, Table 3 style): forget-set source x method, with and without SAGE.

Usage: python bench/efficacy.py [--split forget01|forget05] [--steps 30] [--no-probes]
                               [--methods ga,npo,ga_gd,ga_kl,ga_gd:balanced] [--tag h100]
A method written NAME:balanced trains with `unlearn.balance_gradients` on (retain gradient
rescaled to the forget gradient's norm every step).
On the `default` world: for every author of the split, MAGE / DirectQA / gold forget sets are
built (MAGE's neighbor set is the retain data for every source), then each method trains for the
same number of steps at the same learning rate (early stop off, so steps match across sources),
and the adapter is evaluated with and without SAGE. Writes bench/results/efficacy_<split>.json/.md.
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

METHODS = ("ga", "npo", "ga_gd", "ga_kl")
SOURCES = ("mage", "directqa", "gold")
KEYS = ("forget_Q_A_ROUGE", "forget_Q_A_Prob", "forget_quality", "model_utility", "retain_Q_A_ROUGE",
        "neighbor_rouge", "mia_min_k_plus_plus_auc")


def write_table(name: str, split: str, names: list[str], steps: int, lr: float, before: dict,
                cells: list[dict]) -> Path:
    """The markdown table bench/results/<name>.md."""
    def nll_cell(c: dict) -> str:
        if c.get("forget_nll_first") is None:
            return "-"
        return f"{c['forget_nll_first']:.3g} -> {c['forget_nll_last']:.3g}"

    lines = [f"# Efficacy on {split} ({', '.join(names)}), {steps} steps, lr {lr}\n",
             "| source | method | SAGE | forget ROUGE (x before) | model utility (x before) | forget quality | "
             "retain bias | MIA min-k++ AUC | forget NLL first -> last step |", "|---|---|---|---|---|---|---|---|---|",
             f"| before | - | - | {before['forget_Q_A_ROUGE']:.3f} | {before['model_utility']:.3f} | "
             f"{before['forget_quality']:.2g} | - | {before['mia_min_k_plus_plus_auc']:.3f} | - |"]
    for c in cells:
        lines.append(
            f"| {c['source']} | {c['method']} | {'yes' if c['sage'] else 'no'} | {c['forget_Q_A_ROUGE']:.3f} "
            f"({c['forget_Q_A_ROUGE'] / before['forget_Q_A_ROUGE']:.2f}x) | {c['model_utility']:.3f} "
            f"({c['model_utility'] / before['model_utility']:.2f}x) | {c['forget_quality']:.2g} | "
            f"{c['retain_bias']:.4f} | {c['mia_min_k_plus_plus_auc']:.3f} | {nll_cell(c)} |")
    path = ROOT / "bench" / "results" / f"{name}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--split", default="forget01")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--retain-rows", type=int, default=100)
    parser.add_argument("--general-rows", type=int, default=40)
    parser.add_argument("--neighbor-rows", type=int, default=40)
    parser.add_argument("--no-probes", action="store_true", help="skip the entity probes (not in the table)")
    parser.add_argument("--table-only", action="store_true", help="rewrite the markdown from the existing JSON")
    parser.add_argument("--tag", default="", help="suffix of the result files (e.g. the device)")
    args = parser.parse_args()
    name = f"efficacy_{args.split}" + (f"_{args.tag}" if args.tag else "")
    if args.table_only:
        done = json.loads((ROOT / "bench" / "results" / f"{name}.json").read_text())
        write_table(name, args.split, done["authors"], done["steps"], done["lr"], done["before"], done["cells"])
        return
    params = load_params()
    params = params.model_copy(update={"evaluate": params.evaluate.model_copy(update={
        "retain_rows": args.retain_rows, "general_rows": args.general_rows, "neighbor_rows": args.neighbor_rows,
        "probes": not args.no_probes})})
    record = built_world(params.world.output_dir)
    model = Path(record["model_path"])
    names = [load_authors()[i] for i in split_author_indices(args.split)]
    work = ROOT / "artifacts" / "bench" / "efficacy" / args.split
    work.mkdir(parents=True, exist_ok=True)

    sets, neighbor_path, mining = mine_sets(params, model, names, SOURCES, work)
    unlearn_cfg = params.unlearn.model_copy(update={"max_steps": args.steps, "lr": args.lr,
                                                    "forget_nll_bound": 1e9, "checkpoint_every": 10**6})
    params = params.model_copy(update={"unlearn": unlearn_cfg})

    from lethe.unlearn.run import run_unlearning

    before = None
    cells = []
    for source in SOURCES:
        forget_path = write_set(work / f"forget_{source}.jsonl", sets[source])
        for spec in args.methods.split(","):
            method, _, option = spec.partition(":")
            run_params = params.model_copy(update={"unlearn": params.unlearn.model_copy(
                update={"balance_gradients": option == "balanced"})})
            out_dir = work / f"{source}-{spec.replace(':', '-')}"
            shutil.rmtree(out_dir, ignore_errors=True)
            t0 = time.perf_counter()
            trained = run_unlearning(run_params, model, forget_path, neighbor_path, method, out_dir, sage=True,
                                     allow_unvalidated=True)
            train_seconds = time.perf_counter() - t0
            curve = trained["curves"]
            for variant, adapter in (("plain", trained["raw_adapter_path"]), ("sage", trained["adapter_path"])):
                t1 = time.perf_counter()
                evaluation = evaluate_adapter(params, model, Path(adapter), names, None, out_dir / f"eval-{variant}",
                                              before=before)
                eval_seconds = time.perf_counter() - t1
                if before is None:
                    before = {**evaluation["before"], "_forget_truth_ratios": []}
                cells.append({"source": source, "method": spec, "sage": variant == "sage",
                              "forget_rows": len(sets[source]), "train_seconds": train_seconds,
                              "seconds_per_step": trained["seconds_per_step"], "eval_seconds": eval_seconds,
                              # the forget answers' NLL at the first and last step: a saturated forget set
                              # (NLL ~ 0) gives ascent vanishing gradients
                              "forget_nll_first": curve[0].get("forget_nll"),
                              "forget_nll_last": curve[-1].get("forget_nll"),
                              "retain_bias": trained["sage"]["mean_retain_bias_after" if variant == "sage"
                                                             else "mean_retain_bias_before"],
                              **{k: evaluation["after"].get(k) for k in KEYS}})
                print(json.dumps(cells[-1]), flush=True)
    before_row = {k: before.get(k) for k in KEYS}
    write_table(name, args.split, names, args.steps, args.lr, before_row, cells)
    write_result(name, {"split": args.split, "authors": names, "steps": args.steps, "lr": args.lr,
                        "evaluate": params.evaluate.model_dump(), "before": before_row, "mining": mining,
                        "cells": cells})


if __name__ == "__main__":
    main()
