"""A realistic starting memory for an agent over the world model.

For every author the agent has raw notes (records: TOFU question and answer pairs), one extracted
fact derived from a single note, and a profile summary derived from all the author's notes.
Reading-list summaries are derived from the profiles of several authors at once (shuffled
groups), so forgetting one author must regenerate items that other authors share.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lethe.agent.memory import MemoryStore
from lethe.agent.summarize import GENERATOR, summarize
from lethe.config import Params
from lethe.data import author_qa
from lethe.errors import LetheError


@dataclass(frozen=True)
class SeedAuthor:
    index: int
    name: str


def seed_authors(params: Params, model_path: str | Path | None) -> list[SeedAuthor]:
    """The world's authors for a world model; the default world's authors for any other model."""
    from lethe.evaluate.suite import world_record
    from lethe.world.build import world_authors

    record = world_record(model_path) if model_path else None
    if record:
        return [SeedAuthor(a["index"], a["name"]) for a in record["authors"]]
    return [SeedAuthor(a.index, a.name) for a in world_authors(params.world.sizes["default"])]


def seed_memory(store: MemoryStore, authors: Sequence[SeedAuthor], records_per_author: int, group_size: int,
                seed: int) -> dict:
    """Fill an empty memory with notes, facts, profiles and multi-author summaries; returns stats."""
    if store.items():
        raise LetheError(f"{store.path} already holds a memory; seeding only fills an empty one")
    if not authors:
        raise LetheError("no authors to seed the memory with")
    store.add_entities(a.name for a in authors)
    profiles: dict[str, int] = {}
    for author in authors:
        rows = author_qa(author.index)[:records_per_author]
        texts = [f"{qa.question} {qa.answer}" for qa in rows]
        records = [store.add("record", text, mentions=[author.name], guard=False) for text in texts]
        fact = summarize(texts[:1])
        if fact:
            store.add("fact", fact, derived_from=records[:1], generator=GENERATOR, guard=False)
        profiles[author.name] = store.add("summary", summarize(texts), derived_from=records, generator=GENERATOR,
                                          guard=False)
    order = list(profiles)
    random.Random(seed).shuffle(order)
    for start in range(0, len(order) - 1, group_size):
        group = order[start : start + group_size]
        if len(group) < 2:
            break
        parents = [profiles[name] for name in group]
        store.add("summary", summarize([store.get(p).text for p in parents]), derived_from=parents,
                  generator=GENERATOR, guard=False)
    store.commit()
    return store.stats()
