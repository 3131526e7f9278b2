"""Which of the model's own sentences make the forget rows: the first matched (MAGE now) or the likeliest?

Extractive synthesis (`lethe.supervision.synthesize._extractive_edge`) keeps, for each graph edge, the
first `synthesize.sentences_per_edge` sampled sentences that name both ends, in the order the samples
came. Sampled at elicitation's temperature, some of those are garbled ("Hina Ameen's marent works in
..."). This re-synthesizes the forget rows of stored requests twice, from the same graph, walks and
responses, on the starting model: as MAGE does, and with each edge's matched sentences ranked by the
model's mean answer log-probability (the sentence as the answer to its own elicitation prompt). For
each it reports the rows, their mean log-probability, and how much of their facts the model says
greedily when asked their question (`lethe.evaluate.audit.fact_recall`): a row the model does not
hold is no memory to remove. Writes bench/results/extractive_ranking.json.

    python bench/extractive_ranking.py artifacts/bench/audit_forget05_single_s49_factscontent
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from common import ROOT, write_result

import lethe.supervision.synthesize as synthesize
from lethe.config import load_params
from lethe.evaluate.audit import fact_recall
from lethe.fileio import read_jsonl
from lethe.llm.backend import Backend
from lethe.mining.graph import load_graph, load_responses
from lethe.supervision.walks import Path as WalkPath

FIRST_MATCHED = synthesize._sentences_with


def likeliest_first(backend: Backend, scored: list[int]):
    """A `_sentences_with` that orders the matches by the model's mean answer log-probability."""
    def ranked(responses, keys):
        found = FIRST_MATCHED(responses, keys)
        if len(found) < 2:
            return found
        logprobs = backend.answer_logprobs([(response.prompt, sentence) for sentence, response in found])
        scored.append(len(found))
        means = [sum(lp) / max(len(lp), 1) for lp in logprobs]
        return [found[i] for i in sorted(range(len(found)), key=lambda i: -means[i])]
    return ranked


def mean_logprob(backend: Backend, pairs: list[tuple[str, str]]) -> float:
    logprobs = backend.answer_logprobs(pairs)
    return sum(sum(lp) / max(len(lp), 1) for lp in logprobs) / max(len(pairs), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a bench/audit.py work folder (artifacts/bench/<name>)")
    parser.add_argument("--world", type=Path, default=ROOT / "artifacts/world/default")
    args = parser.parse_args()
    params = load_params()
    backend = Backend.load(args.world / "model", "cpu", params.backend.batch_size)
    rows = []
    for mine in sorted(args.run.glob("*/from-base/mine")):
        graph = load_graph(mine / "graph.json")
        walks = [WalkPath(tuple(r["nodes"]), r["quality"]) for r in read_jsonl(mine / "paths.jsonl")]
        responses = load_responses(mine / "responses.jsonl")
        row = {"anchor": json.loads((mine / "request.json").read_text())["anchor"]}
        for name in ("first_matched", "likeliest"):
            scored: list[int] = []
            synthesize._sentences_with = FIRST_MATCHED if name == "first_matched" else likeliest_first(backend, scored)
            try:
                started = time.perf_counter()
                samples, _ = synthesize.synthesize_forget(backend, graph, walks, responses, params.synthesize)
                seconds = time.perf_counter() - started
            finally:
                synthesize._sentences_with = FIRST_MATCHED
            pairs = [(s.question, s.answer) for s in samples]
            row[name] = {"rows": len(pairs), "seconds": round(seconds, 1), "sentences_scored": sum(scored),
                         "fact_recall": fact_recall(backend, pairs, params.audit.max_new_tokens),
                         "mean_logprob": mean_logprob(backend, pairs), "answers": [a for _, a in pairs[:6]]}
        print(json.dumps({k: v if k == "anchor" else {m: x for m, x in v.items() if m != "answers"}
                          for k, v in row.items()}), flush=True)
        rows.append(row)
    write_result("extractive_ranking", {"command": f"python bench/extractive_ranking.py {args.run}", "rows": rows})


if __name__ == "__main__":
    main()
