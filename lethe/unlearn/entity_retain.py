"""Self-retain rows about every other entity the model holds: what it says about them before unlearning.

The forget term pushes on whatever the target shares with its look-alikes, and the retain set
(the request's neighbor QA and the world's general rows) need not mention those look-alikes at all:
on the default world, the authors that fell furthest are the other forget-split authors, which no
general retain row names. These rows anchor each of them with the model's *own* greedy answer to
the elicitation prompts, so they need no corpus and no gold answers, and work for any model whose
other entities are named (a world model's authors, or `unlearn.entity_retain_names`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from pathlib import Path

from lethe.config import Params
from lethe.errors import LetheError
from lethe.evaluate.suite import other_entities


def prompt_orders(entities: Sequence[str], templates: Sequence[str], seed: int) -> dict[str, list[str]]:
    """Every template about every entity, each entity's prompts in its own seeded order."""
    rng = random.Random(seed)
    orders = {}
    for entity in entities:
        prompts = [t.format(anchor=entity) for t in templates]
        rng.shuffle(prompts)
        orders[entity] = prompts
    return orders


def even_share(orders: dict[str, list[str]], rows: int) -> list[tuple[str, str]]:
    """`rows` (entity, prompt) pairs spread evenly: each entity gets its share before any gets one more."""
    depth = max((len(p) for p in orders.values()), default=0)
    chosen = [(e, prompts[i]) for i in range(depth) for e, prompts in orders.items() if i < len(prompts)]
    return chosen[:rows]


def entity_retain(params: Params, model: str | Path, targets: AbstractSet[str],
                  forget_questions: Sequence[str] = ()) -> list[tuple[str, str]]:
    """`unlearn.entity_retain_rows` (prompt, the model's own greedy answer) pairs about the other
    entities the model holds (see `lethe.evaluate.suite.other_entities`), spread evenly; [] when the
    option is 0. Refuses a model whose other entities are unknown."""
    cfg = params.unlearn
    if cfg.entity_retain_rows == 0:
        return []
    entities = other_entities(model, cfg.entity_retain_names, targets, forget_questions)
    if not entities:
        raise LetheError(f"unlearn.entity_retain_rows is {cfg.entity_retain_rows}, but the model at {model} names no "
                         "other entity to keep (not a world model): list them in unlearn.entity_retain_names, "
                         "or set entity_retain_rows to 0")
    from lethe.llm.score_cache import load_cached

    prompts = [p for _, p in even_share(prompt_orders(entities, params.elicit.prompts, cfg.seed),
                                        cfg.entity_retain_rows)]
    answers = load_cached(model, params).greedy(prompts, params.elicit.max_new_tokens)
    return [(p, a.strip()) for p, a in zip(prompts, answers) if a.strip()]
