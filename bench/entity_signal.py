"""Could the adaptive budget see other entities' retention in the model's own answers about them?

A per-entity retention signal the budget could score between rounds, with no corpus: the elicitation
prompts about every other entity, answered greedily by the base model and by the unlearned one, and
the ROUGE-L recall of the unlearned answers against the base's, per entity. This checks whether that
signal tracks what the gate measures (each entity's retain ROUGE after / the base's, from
evaluation.json) on stored `bench/audit.py` runs: the Spearman rank correlation of the signal's loss
with the retention lost, and where the entity that fell furthest ranks by the signal.

    python bench/entity_signal.py audit_forget01_single_s39_fixed160_seed0 [...] --tag s40
"""

from __future__ import annotations

import argparse
import json

from common import ROOT, write_result
from interference import spearman

from lethe.config import load_params
from lethe.evaluate.runner import with_adapter
from lethe.evaluate.suite import other_entities
from lethe.fileio import load_qa_file
from lethe.llm.backend import Backend
from lethe.rouge import rouge_l_recall
from lethe.unlearn.entity_retain import even_share, prompt_orders
from lethe.unlearn.run import authors_named_in


def self_retention(base_answers: dict[str, str], answers: dict[str, str], entity_of: dict[str, str]) -> dict:
    """Per entity, the mean ROUGE-L recall of the unlearned model's answers against the base's."""
    scores: dict[str, list[float]] = {}
    for prompt, reference in base_answers.items():
        if reference.strip():
            scores.setdefault(entity_of[prompt], []).append(rouge_l_recall(answers[prompt], reference))
    return {entity: sum(values) / len(values) for entity, values in scores.items()}


def measure(params, base: Backend, model: str, folder, prompts_per_entity: int) -> dict | None:
    """The self-answer signal against retention lost, for one stored request folder."""
    evaluation = json.loads((folder / "evaluation" / "evaluation.json").read_text())["evaluation"]
    now, before = evaluation["after"].get("entity_rouge"), evaluation["after"].get("base_entity_rouge")
    adapter = folder / "unlearn" / "adapter"
    if not now or not before or not adapter.is_dir():
        return None
    forget = load_qa_file(folder / "mine" / "forget_set.jsonl", "forget set")
    entities = other_entities(model, [], authors_named_in(forget), [q for q, _ in forget])
    orders = prompt_orders(entities, params.elicit.prompts, params.unlearn.seed)
    chosen = even_share({e: p[:prompts_per_entity] for e, p in orders.items()}, 10**9)
    entity_of = {prompt: entity for entity, prompt in chosen}
    prompts = [p for _, p in chosen]
    tokens = params.audit.max_new_tokens
    base_answers = dict(zip(prompts, base.greedy(prompts, tokens)))
    unlearned = with_adapter(Backend.load(model, "cpu", params.backend.batch_size), adapter)
    signal = self_retention(base_answers, dict(zip(prompts, unlearned.greedy(prompts, tokens))), entity_of)
    lost = {e: 1 - now[e] / before[e] for e in signal if e in now and before.get(e)}
    names = sorted(lost)
    by_signal = sorted(names, key=lambda e: signal[e])
    worst = max(names, key=lambda e: lost[e])
    return {"request": str(folder.relative_to(ROOT / "artifacts" / "bench")), "entities": len(names),
            "prompts_per_entity": prompts_per_entity,
            "mean_self_retention": sum(signal[e] for e in names) / len(names),
            "spearman_signal_loss_vs_lost": spearman([1 - signal[e] for e in names], [lost[e] for e in names]),
            "fell_furthest": {"entity": worst, "lost": lost[worst], "signal": signal[worst],
                              "signal_rank": by_signal.index(worst) + 1},
            "gate_weakest": [{"entity": e, "retention": 1 - lost[e], "signal": signal[e]}
                             for e in sorted(names, key=lambda e: -lost[e])[:4]],
            "signal_weakest": [{"entity": e, "signal": signal[e], "retention": 1 - lost[e]} for e in by_signal[:4]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="folder names under artifacts/bench")
    parser.add_argument("--world", default="artifacts/world/default")
    parser.add_argument("--prompts", type=int, default=3, help="elicitation prompts per entity")
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    params = load_params(ROOT / "params.yaml")
    model = str(ROOT / args.world / "model")
    base = Backend.load(model, "cpu", params.backend.batch_size)
    results = []
    for run in args.runs:
        for evaluation in sorted((ROOT / "artifacts" / "bench" / run).glob("*/from-base/evaluation/evaluation.json")):
            found = measure(params, base, model, evaluation.parents[1], args.prompts)
            if found:
                results.append(found)
                print(json.dumps(found))
    name = "entity_signal" + (f"_{args.tag}" if args.tag else "")
    write_result(name, {"world": args.world, "runs": args.runs, "requests": results})


if __name__ == "__main__":
    main()
