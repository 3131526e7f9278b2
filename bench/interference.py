"""Does first-order interference, measured before training, predict which other entities unlearning hurts?

If it did, the retain set could weigh most the entities whose own rows' NLL a forget step raises
most (lethe/unlearn/interference.py). This checks that premise on stored `bench/audit.py` runs: for
every request folder of the named runs, it measures that interference on the base model with the
request's forget set, and compares it with each entity's measured retention after unlearning
(retain ROUGE after / the base's, from evaluation.json). It reports the Spearman rank correlation of
interference with the retention lost, and where the entity that fell furthest ranks.

    python bench/interference.py audit_forget01_single_s36_inner10_fixed160_retain200_beta003_entity600 [...]
"""

from __future__ import annotations

import argparse
import json

from common import ROOT, write_result

from lethe.config import load_params
from lethe.evaluate.suite import other_entities
from lethe.fileio import load_qa_file
from lethe.llm.backend import Backend
from lethe.unlearn.entity_retain import even_share, prompt_orders
from lethe.unlearn.interference import forget_interference
from lethe.unlearn.run import authors_named_in

MEASURE_PROMPTS = 3  # prompts per entity (each in its seeded order) the interference is measured on


def ranks(values: list[float]) -> list[float]:
    """Average ranks (ties share theirs), 0-based."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    result = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            result[order[k]] = (i + j) / 2
        i = j + 1
    return result


def spearman(xs: list[float], ys: list[float]) -> float:
    """Spearman's rank correlation."""
    rx, ry = ranks(xs), ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    norm = (sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry)) ** 0.5
    return cov / norm if norm else 0.0


def measure(params, backend: Backend, model: str, request: str) -> dict | None:
    """Interference against retention lost, for one stored request folder."""
    folder = ROOT / "artifacts" / "bench" / request
    evaluation = json.loads((folder / "from-base" / "evaluation" / "evaluation.json").read_text())["evaluation"]
    now, base = evaluation["after"].get("entity_rouge"), evaluation["after"].get("base_entity_rouge")
    if not now or not base:
        return None
    forget = load_qa_file(folder / "from-base" / "mine" / "forget_set.jsonl", "forget set")
    entities = other_entities(model, [], authors_named_in(forget), [q for q, _ in forget])
    orders = prompt_orders(entities, params.elicit.prompts, params.unlearn.seed)
    prompts = even_share({e: p[:MEASURE_PROMPTS] for e, p in orders.items()}, 10**9)
    answers = backend.greedy([p for _, p in prompts], params.elicit.max_new_tokens)
    by_entity: dict[str, list[tuple[str, str]]] = {}
    for (entity, prompt), answer in zip(prompts, answers):
        if answer.strip():
            by_entity.setdefault(entity, []).append((prompt, answer.strip()))
    risk = forget_interference(backend, forget, by_entity, params.unlearn.batch_size)
    lost = {e: 1 - now[e] / base[e] for e in risk if e in now and base.get(e)}
    names = sorted(lost)
    by_risk = sorted(names, key=lambda e: -risk[e])
    worst = max(names, key=lambda e: lost[e])
    return {"request": request, "entities": len(names),
            "spearman_interference_vs_lost": spearman([risk[e] for e in names], [lost[e] for e in names]),
            "fell_furthest": {"entity": worst, "lost": lost[worst], "interference_rank": by_risk.index(worst) + 1},
            "top_interference": [{"entity": e, "interference": risk[e], "lost": lost[e]} for e in by_risk[:5]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="folder names under artifacts/bench")
    parser.add_argument("--world", default="artifacts/world/default")
    args = parser.parse_args()
    params = load_params(ROOT / "params.yaml")
    model = str(ROOT / args.world / "model")
    backend = Backend.from_params(model, params.backend)
    results = []
    for run in args.runs:
        for folder in sorted((ROOT / "artifacts" / "bench" / run).glob("*/from-base/evaluation/evaluation.json")):
            found = measure(params, backend, model, str(folder.parents[2].relative_to(ROOT / "artifacts" / "bench")))
            if found:
                results.append(found)
                print(json.dumps(found))
    out = write_result("interference", {"world": args.world, "requests": results})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
