"""MAGE graph recall / precision / cost per forget05 author, adaptive stop on and off, vs DirectQA.

Usage: python bench/mining.py [--split forget05] [--limit N]   -> bench/results/mining.json
       python bench/mining.py --indices 0,1,2 --name mining_heldout  (authors by TOFU index)
Recall is over the key facts of lethe.evaluate.graph_recall (birth, parents, genre, awards,
books); `mention_recall` uses the looser earlier definition, for comparison with older runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from common import built_world, write_result

from lethe.config import load_params
from lethe.data import author_qa, load_authors, split_author_indices
from lethe.evaluate.graph_recall import fact_recall, graph_recall, key_facts
from lethe.llm.backend import Backend
from lethe.mining.graph import mine_graph
from lethe.supervision.baselines import directqa_forget_set


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--split", default="forget05")
    parser.add_argument("--limit", type=int, default=0, help="only the first N authors of the split (0 = all)")
    parser.add_argument("--indices", default="", help="TOFU author indices instead of a split")
    parser.add_argument("--name", default="mining", help="result file name under bench/results")
    args = parser.parse_args()
    params = load_params()
    record = built_world(params.world.output_dir)
    backend = Backend.load(record["model_path"], "cpu", params.backend.batch_size)
    rows = []
    indices = [int(i) for i in args.indices.split(",")] if args.indices else split_author_indices(args.split)
    for index in indices[: args.limit or len(indices)]:
        name, gold = load_authors()[index], author_qa(index)
        row = {"author": name}
        for label, adaptive in (("adaptive", True), ("no_adaptive_stop", False)):
            expand = params.expand.model_copy(update={"adaptive_stop": adaptive})
            start = time.perf_counter()
            graph, responses, stats = mine_graph(backend, name, params.elicit, params.score, expand)
            seconds = time.perf_counter() - start
            scores = graph_recall(graph, responses, name, gold)
            row[label] = {"recall": scores["recall"], "mention_recall": scores["mention_recall"],
                          "precision": scores["precision"], "nodes": scores["nodes"],
                          "model_calls": stats.model_calls, "seconds": seconds, "stopped_by": stats.stopped_by,
                          "hops_done": stats.hops_done, "back_strength": stats.back_strength,
                          "by_category": scores["by_category"],
                          "missing": [f for f in scores["facts"] if f not in scores["found"]]}
        start = time.perf_counter()
        direct = directqa_forget_set(backend, name, seed=0)
        coverage = fact_recall(key_facts(name, gold), [s.question + " " + s.answer for s in direct])
        row["directqa"] = {"coverage": coverage["recall"], "rows": len(direct), "seconds": time.perf_counter() - start}
        rows.append(row)
        print(json.dumps({k: (v if k == "author" else {kk: vv for kk, vv in v.items() if kk != "missing"})
                          for k, v in row.items()}), flush=True)

    def mean(path):
        return statistics.mean(r[path[0]][path[1]] for r in rows)

    measures = ("recall", "mention_recall", "precision", "model_calls", "seconds")
    summary = {label: {m: mean((label, m)) for m in measures} for label in ("adaptive", "no_adaptive_stop")}
    calls = {label: summary[label]["model_calls"] for label in ("adaptive", "no_adaptive_stop")}
    summary["adaptive_call_saving"] = 1 - calls["adaptive"] / calls["no_adaptive_stop"]
    summary["directqa_coverage"] = mean(("directqa", "coverage"))
    used = {"elicit": params.elicit.model_dump(), "score": params.score.model_dump(),
            "expand": params.expand.model_dump()}
    write_result(args.name, {"split": None if args.indices else args.split, "indices": indices,
                             "authors_run": len(rows), "params": used, "summary": summary, "authors": rows})


if __name__ == "__main__":
    main()
