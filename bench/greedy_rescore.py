"""Stored adapters judged again on greedy held-out probes: what the model said, of memories never trained on.

For each request a `bench/audit.py` run left behind, the starting model answers every elicitation question
of its mine greedily (lethe.supervision.greedy: a row per answer naming memory nodes the question does not,
given with at least synthesize.greedy_min_confidence). A row is a probe for the stored adapter only where
that adapter never trained on any of it: no training row of its forget set mentions a node the answer
names, nor asks its question. The starting model, the unlearned model (its adapter merged) and the
never-trained reference answer the probes; the gate's held-out rule (lethe.evaluate.floor) is applied to
their mean ROUGE-L recall, beside what the stored audit measured on its own probes (`stored_probes`).
Writes bench/results/greedy_rescore[_TAG].json.

    python bench/greedy_rescore.py artifacts/bench/audit_forget05_single_s50_thorough --tag s50_thorough
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import ROOT, write_result
from heldout_on_stated import verdict

from lethe.config import load_params
from lethe.evaluate.audit import answered, mean_known
from lethe.evaluate.runner import with_adapter
from lethe.evaluate.suite import other_entities
from lethe.llm.backend import Backend
from lethe.mage import load_samples
from lethe.mining.graph import load_graph, load_responses
from lethe.supervision.greedy import distinct_questions, greedy_rows
from lethe.supervision.synthesize import contains_key, other_entity_nodes


def untrained_probes(mine: Path, backend: Backend, max_new_tokens: int, entity_retain: list[str],
                     min_confidence: float) -> list:
    """The greedy rows of `mine` that its training forget set never touched (see the module docstring)."""
    graph = load_graph(mine / "graph.json")
    anchor = graph.graph["anchor"]
    others = other_entities(backend_path(mine), entity_retain, {anchor})
    rows = greedy_rows(backend, graph, distinct_questions(load_responses(mine / "responses.jsonl")),
                       max_new_tokens, other_entity_nodes(graph, others), min_confidence)
    trained = load_samples(mine / "forget_set.jsonl")
    texts = [f"{r.question} {r.answer}" for r in trained]
    questions = {" ".join(r.question.lower().split()) for r in trained}
    keys = {n: d.get("key", n.lower()) for n, d in graph.nodes(data=True)}
    return [row for row in rows if " ".join(row.question.lower().split()) not in questions
            and not any(contains_key(text, keys[n]) for n in row.mentions for text in texts)]


def backend_path(mine: Path) -> str:
    return json.loads((mine / "request.json").read_text())["model_path"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="bench/audit.py work folders (artifacts/bench/<name>)")
    parser.add_argument("--world", type=Path, default=ROOT / "artifacts/world/default")
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    params = load_params()
    cfg, gate = params.audit, params.gate
    device, batch = params.backend.device, params.backend.batch_size
    reference = Backend.load(args.world / "retain_model", device, batch)
    rows = []
    for run in args.runs:
        for work in sorted(p.parent for p in run.glob("*/from-base/unlearn")):
            base = Backend.load(args.world / "model", device, batch)
            probes = untrained_probes(work / "mine", base, params.elicit.max_new_tokens,
                                      params.unlearn.entity_retain_names, params.synthesize.greedy_min_confidence)
            pairs = [(p.question, p.answer) for p in probes]
            before = answered(base, pairs, cfg.max_new_tokens)
            after = answered(with_adapter(base, work / "unlearn" / "adapter"), pairs, cfg.max_new_tokens)
            ref = answered(reference, pairs, cfg.max_new_tokens)
            means = {name: mean_known(scored[1]) for name, scored in (("before", before), ("after", after),
                                                                 ("reference", ref))}
            stored = json.loads((work / "evaluation" / "metrics.json").read_text())
            row = {"run": run.name, "anchor": json.loads((work / "mine" / "request.json").read_text())["anchor"],
                   "probes": len(pairs), "nodes": sorted({n for p in probes for n in p.mentions}), **means,
                   "verdict": verdict(means, gate),
                   "stored_probes": {which: stored.get(which, {}).get("heldout_rouge")
                                     for which in ("before", "after", "reference")},
                   "answers": [{"question": q, "expected": a, "before": b, "after": f, "reference": r}
                               for (q, a), b, f, r in zip(pairs, before[0], after[0], ref[0])]}
            print(json.dumps({k: v for k, v in row.items() if k != "answers"}), flush=True)
            rows.append(row)
    name = "greedy_rescore" + (f"_{args.tag}" if args.tag else "")
    write_result(name, {"command": "python bench/greedy_rescore.py " + " ".join(str(r) for r in args.runs)
                        + (f" --tag {args.tag}" if args.tag else ""), "rows": rows})


if __name__ == "__main__":
    main()
