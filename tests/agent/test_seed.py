"""Seeding the tiny world's memory, and the memory pathway on it (no model needed)."""

import pytest

from lethe.agent.memory import MemoryStore, MemoryWriteBlocked
from lethe.agent.pathway import forget_in_memory, memory_forget_queries
from lethe.agent.seed import SeedAuthor, seed_authors, seed_memory
from lethe.errors import LetheError

TARGET = "Basil Mahfouz Al-Kuwaiti"


@pytest.fixture
def seeded(tmp_path, params, tiny_world):
    store = MemoryStore(tmp_path / "memory.db")
    stats = seed_memory(store, seed_authors(params, tiny_world["model_path"]), 4, 3, seed=0)
    yield store, stats
    store.close()


def test_seeded_memory_has_notes_facts_profiles_and_multi_author_summaries(seeded):
    store, stats = seeded
    assert stats["entities"] == 5 and stats["by_kind"]["record"] == 20
    assert stats["by_kind"]["fact"] == 5 and stats["derived_multi_source"] >= 5
    multi_author = [i for i in store.items() if len(i.mentions) >= 2]
    assert multi_author and all(i.kind == "summary" for i in multi_author)
    with pytest.raises(LetheError, match="already holds"):
        seed_memory(store, [SeedAuthor(0, "Jaime Vasquez")], 4, 3, 0)


def test_forgetting_one_author_keeps_the_others(seeded):
    store, _ = seeded
    others = {e: len(store.mentioning(e)) for e in store.entities() if e != TARGET}
    shared_before = [i.id for i in store.items() if TARGET in i.mentions and len(i.mentions) > 1]
    report = forget_in_memory(store, TARGET, ["basil mahfouz", "al-kuwaiti"], "test")
    assert not store.mentioning(TARGET)
    assert all(TARGET not in item.text for item in store.items())
    for item_id in shared_before:  # the reading list with Basil survives, about the others only
        item = store.get(item_id)
        assert item is not None and item.mentions and TARGET not in item.mentions
    assert {e: len(store.mentioning(e)) for e in others} == others
    queries = memory_forget_queries(report["removed_texts"], TARGET)
    assert queries and all(q.endswith("?") for q, _ in queries)
    with pytest.raises(MemoryWriteBlocked):
        store.add("note", "Basil Mahfouz wrote Promise by the Seine.")
