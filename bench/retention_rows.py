"""How much of the gate's entity-retention verdict is sampling noise: each other author scored on the
evaluation answers the gate drew (evaluate.retain_rows / neighbor_rows) and on every one TOFU holds.

The gate's retention check scores each author the model must keep on the rows `build_plan` samples:
with `evaluate.retain_rows 200` that is 7-16 answers an author, so one broken answer moves an author
by 0.06-0.14. TOFU holds 20 evaluation answers for each retain-split author (10 for the world's other
authors, whose other half may train the retain term). For every request a `bench/audit.py` run left
an adapter for, this greedily answers every such row with the base model and with the adapter merged
in, and reports each author's retention (ROUGE-L recall after / the base's) on the gate's rows and on
all rows, and the weakest author under each. No training: the stored adapters are judged as they are.

    python bench/retention_rows.py audit_forget05_single_s55_thorough_hina_seed2 [...] --gate-rows 200 --tag s57

`--gate-rows` is the draw the runs' gate used (params.yaml's evaluate.retain_rows was 200 until stop 57).
`--adapters DIR... --anchor A` judges any adapter folders of a request about A instead (checkpoints
copied out of a running request, say: how retention moves along one training path).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from common import ROOT, stored_requests, write_result

from lethe.config import load_params
from lethe.data import author_qa
from lethe.errors import LetheError
from lethe.evaluate.runner import with_adapter
from lethe.evaluate.suite import build_plan
from lethe.llm.backend import Backend
from lethe.rouge import rouge_l_recall
from lethe.supervision.baselines import author_index

ALL_ROWS = 100_000  # more than TOFU holds: build_plan then keeps every row


def kept_rows(model: str, evaluate_cfg, anchor: str, rows: int) -> list:
    """The rows the gate's retention check scores for `anchor`'s request, at `rows` retain and neighbor rows."""
    plan = build_plan(model, evaluate_cfg.model_copy(update={"retain_rows": rows, "neighbor_rows": rows}),
                      targets=[anchor])
    return [row for row in [*plan.retain, *plan.neighbors] if row.author]


def per_author(rows: list, after: dict[str, float], base: dict[str, float]) -> dict[str, dict]:
    """Each author's mean ROUGE after and before on `rows`, their ratio and how many answers it rests on."""
    grouped: dict[str, list] = {}
    for row in rows:
        grouped.setdefault(row.author, []).append(row.question)
    out = {}
    for author, questions in sorted(grouped.items()):
        now = sum(after[q] for q in questions) / len(questions)
        then = sum(base[q] for q in questions) / len(questions)
        out[author] = {"answers": len(questions), "after": round(now, 4), "base": round(then, 4),
                       "ratio": round(now / then, 4) if then else None}
    return out


def weakest(authors: dict[str, dict]) -> tuple[str, float]:
    name = min((a for a in authors if authors[a]["ratio"] is not None), key=lambda a: authors[a]["ratio"])
    return name, authors[name]["ratio"]


def greedy_rouge(backend: Backend, rows: list, max_new_tokens: int) -> tuple[dict[str, float], dict[str, str]]:
    answers = backend.greedy([r.question for r in rows], max_new_tokens)
    return ({r.question: rouge_l_recall(a, r.answer) for r, a in zip(rows, answers)},
            {r.question: a for r, a in zip(rows, answers)})


def score_on_base(params, model: str, rows: list, base_scores: dict[str, float]) -> None:
    """Add to `base_scores` the base model's ROUGE on those of `rows` it lacks (scored once across adapters)."""
    missing = [r for r in rows if r.question not in base_scores]
    if missing:
        base_scores.update(greedy_rouge(Backend.from_params(model, params.backend), missing,
                                        params.evaluate.max_new_tokens)[0])


def gold_forget(params, model: str, anchor: str, adapted: Backend, base_scores: dict[str, float]) -> dict | None:
    """The anchor's TOFU gold answers (a benchmark author's), greedy ROUGE-L recall after and before:
    a quick look at whether the adapter still forgets, beside what it keeps (None: not a TOFU author)."""
    try:
        rows = author_qa(author_index(anchor))
    except LetheError:
        return None
    score_on_base(params, model, rows, base_scores)
    after = greedy_rouge(adapted, rows, params.evaluate.max_new_tokens)[0]
    now, then = (sum(v) / len(rows) for v in ([after[r.question] for r in rows],
                                              [base_scores[r.question] for r in rows]))
    return {"rows": len(rows), "after": round(now, 4), "base": round(then, 4), "ratio": round(now / then, 4)}


def measure(params, model: str, anchor: str, adapter: Path, base_scores: dict[str, float], gate_rows: int) -> dict:
    """One adapter of a request about `anchor`: retention per author on the gate's rows and on all rows."""
    started = time.perf_counter()
    every = kept_rows(model, params.evaluate, anchor, ALL_ROWS)
    drawn = kept_rows(model, params.evaluate, anchor, gate_rows)
    score_on_base(params, model, every, base_scores)
    adapted = with_adapter(Backend.from_params(model, params.backend), adapter)
    after, answers = greedy_rouge(adapted, every, params.evaluate.max_new_tokens)
    on_drawn, on_all = per_author(drawn, after, base_scores), per_author(every, after, base_scores)
    bound = params.gate.min_entity_retention
    result = {"anchor": anchor, "adapter": str(adapter), "bound": bound, "seconds": 0.0}
    for label, authors, rows in (("drawn", on_drawn, drawn), ("all", on_all, every)):
        name, ratio = weakest(authors)
        result[label] = {"rows": len(rows), "weakest": name, "weakest_ratio": ratio, "passes": ratio >= bound,
                         "below_bound": sorted(a for a, v in authors.items() if v["ratio"] is not None
                                               and v["ratio"] < bound),
                         "mean_ratio": round(sum(v["ratio"] for v in authors.values() if v["ratio"] is not None)
                                             / len(authors), 4)}
    result["authors"] = {a: {"drawn": on_drawn.get(a), "all": on_all[a]} for a in on_all}
    name = result["all"]["weakest"]
    result["weakest_answers"] = [{"question": r.question, "gold": r.answer, "answer": answers[r.question],
                                  "rouge_after": round(after[r.question], 3),
                                  "rouge_base": round(base_scores[r.question], 3)}
                                 for r in every if r.author == name]
    result["gold_forget"] = gold_forget(params, model, anchor, adapted, base_scores)
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", help="folder names under artifacts/bench (bench/audit.py --mode single)")
    parser.add_argument("--adapters", nargs="*", default=[], type=Path,
                        help="adapter folders (a run's checkpoints, say) of one request about --anchor")
    parser.add_argument("--anchor", help="the entity the --adapters forgot")
    parser.add_argument("--world", default="artifacts/world/default")
    parser.add_argument("--gate-rows", type=int, default=None,
                        help="retain and neighbor rows the gate drew (default: params.yaml's evaluate.retain_rows)")
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    params = load_params(ROOT / "params.yaml")
    model = str(ROOT / args.world / "model")
    gate_rows = args.gate_rows or params.evaluate.retain_rows
    base_scores: dict[str, float] = {}
    results = []
    if bool(args.adapters) != bool(args.anchor):
        parser.error("--adapters and --anchor go together")
    todo = [(run, anchor, work / "unlearn" / "adapter") for run in args.runs
            for anchor, work in stored_requests(ROOT / "artifacts" / "bench" / run)]
    todo += [(None, args.anchor, adapter) for adapter in args.adapters]
    for run, anchor, adapter in todo:
        found = {"run": run, **measure(params, model, anchor, adapter, base_scores, gate_rows)}
        results.append(found)
        shown = ("run", "adapter", "drawn", "all", "gold_forget", "seconds")
        print(json.dumps({k: found[k] for k in shown}), flush=True)
    name = "retention_rows" + (f"_{args.tag}" if args.tag else "")
    write_result(name, {"command": "python bench/retention_rows.py " + " ".join(sys.argv[1:]),
                        "world": args.world,
                        "gate_rows": gate_rows, "requests": results})


if __name__ == "__main__":
    main()
