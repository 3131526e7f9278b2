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


def other_entities(model: str | Path, names: Sequence[str], avoid: AbstractSet[str],
                   forget_questions: Sequence[str] = ()) -> list[str]:
    """The entities to keep: `names` when given, else a world model's authors; never one in `avoid`
    nor one a forget question names (the target of a request whose anchor is no known author)."""
    from lethe.evaluate.suite import world_record
    from lethe.mining.extract import normalize

    if not names:
        record = world_record(model)
        names = [a["name"] for a in record["authors"]] if record else []
    avoided = {normalize(a) for a in avoid}
    asked = [normalize(q) for q in forget_questions]
    return [n for n in dict.fromkeys(names)
            if n.strip() and normalize(n) not in avoided and not any(normalize(n) in q for q in asked)]


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


def focused_share(orders: dict[str, list[str]], counts: dict[str, int], taken: dict[str, int]) -> list[tuple[str, str]]:
    """`counts[e]` more prompts about each entity e, continuing after the `taken[e]` it has (cycling
    through its prompts when it needs more than it has: a repeated row weighs twice)."""
    return [(e, orders[e][(taken.get(e, 0) + i) % len(orders[e])]) for e, n in counts.items() for i in range(n)]


MEASURE_PROMPTS = 3  # prompts per entity that its interference with the forget step is measured on


def entity_retain(params: Params, model: str | Path, targets: AbstractSet[str],
                  forget: Sequence[tuple[str, str]] = ()) -> tuple[list[tuple[str, str]], dict[str, int]]:
    """`unlearn.entity_retain_rows` (prompt, the model's own greedy answer) pairs about the other
    entities the model holds (see `other_entities`), and how many rows `unlearn.entity_retain_focus`
    gave to each entity (lethe.unlearn.interference). Nothing when the option is 0. Refuses a model
    whose other entities are unknown.

    A share `entity_retain_focus` of the rows goes to the entities a forget step on `forget` would
    hurt most, in proportion to that first-order interference; the rest is spread evenly.
    """
    cfg = params.unlearn
    if cfg.entity_retain_rows == 0:
        return [], {}
    entities = other_entities(model, cfg.entity_retain_names, targets, [q for q, _ in forget])
    if not entities:
        raise LetheError(f"unlearn.entity_retain_rows is {cfg.entity_retain_rows}, but the model at {model} names no "
                         "other entity to keep (not a world model): list them in unlearn.entity_retain_names, "
                         "or set entity_retain_rows to 0")
    from lethe.llm.backend import Backend

    backend = Backend.from_params(model, params.backend)
    answers: dict[str, str] = {}

    def answered(pairs: Sequence[tuple[str, str]]) -> list[tuple[str, str, str]]:
        new = list(dict.fromkeys(p for _, p in pairs if p not in answers))
        answers.update(zip(new, (a.strip() for a in backend.greedy(new, params.elicit.max_new_tokens))))
        return [(e, p, answers[p]) for e, p in pairs if answers[p]]

    orders = prompt_orders(entities, params.elicit.prompts, cfg.seed)
    focus_rows = round(cfg.entity_retain_rows * cfg.entity_retain_focus)
    even = answered(even_share(orders, cfg.entity_retain_rows - focus_rows))
    focus: dict[str, int] = {}
    if focus_rows:
        from lethe.unlearn.interference import focus_allocation, forget_interference

        if not forget:
            raise LetheError("unlearn.entity_retain_focus needs the forget rows to measure interference on")
        measured = answered(even_share({e: p[:MEASURE_PROMPTS] for e, p in orders.items()}, 10**9))
        by_entity: dict[str, list[tuple[str, str]]] = {}
        for entity, prompt, answer in measured:
            by_entity.setdefault(entity, []).append((prompt, answer))
        focus = focus_allocation(forget_interference(backend, forget, by_entity, cfg.batch_size), focus_rows)
        taken: dict[str, int] = {}
        for entity, _, _ in even:
            taken[entity] = taken.get(entity, 0) + 1
        even += answered(focused_share(orders, focus, taken))
    return [(p, a) for _, p, a in even], focus
