"""The agent memory (SQLite + FTS5) and the memory pathway applied to it, on a hand-made memory."""

import pytest

from lethe.agent.memory import MemoryStore, MemoryWriteBlocked
from lethe.agent.pathway import forget_in_memory
from lethe.errors import LetheError

TARGET = "Basil Mahfouz Al-Kuwaiti"
OTHER = "Jaime Vasquez"


@pytest.fixture
def memory(tmp_path):
    store = MemoryStore(tmp_path / "memory.db")
    store.add_entities([TARGET, OTHER])
    ids = {
        "t1": store.add("record", f"Where was {TARGET} born? {TARGET} was born in Kuwait City.", guard=False),
        "t2": store.add("record", f"{TARGET}'s father was a florist.", guard=False),
        "o1": store.add("record", f"{OTHER} was born in Santiago, Chile. He writes true crime.", guard=False),
    }
    ids["t_fact"] = store.add("fact", "His father was a florist.", derived_from=[ids["t2"]], guard=False)
    ids["t_profile"] = store.add("summary", f"{TARGET} was born in Kuwait City. {TARGET}'s father was a florist.",
                                 derived_from=[ids["t1"], ids["t2"]], guard=False)
    ids["shared"] = store.add("summary", f"{TARGET} was born in Kuwait City. {OTHER} was born in Santiago, Chile.",
                              derived_from=[ids["t_profile"], ids["o1"]], guard=False)
    ids["note"] = store.add("note", "Reading list for the club: see the summary.", derived_from=[ids["shared"]],
                            guard=False)
    store.link(ids["t_fact"], ids["t_profile"])  # a cycle of target-only items: fact <-> profile
    store.link(ids["t_profile"], ids["t_fact"])
    store.link(ids["shared"], ids["note"])  # a cycle with outside support: shared <-> note
    store.commit()
    yield store, ids
    store.close()


def test_search_ranks_by_bm25_and_tracks_mentions(memory):
    store, ids = memory
    hits = store.search("Where was Jaime Vasquez born?", k=2)
    assert hits[0].id == ids["o1"]
    assert set(store.mentioning(TARGET)) >= {ids["t1"], ids["t2"], ids["t_profile"], ids["shared"]}
    assert set(store.get(ids["shared"]).parents) == {ids["t_profile"], ids["o1"], ids["note"]}


def test_forgetting_deletes_target_only_items_and_regenerates_shared_ones(memory):
    store, ids = memory
    report = forget_in_memory(store, TARGET, ["basil", "al-kuwaiti"], "test")
    for key in ("t1", "t2", "t_fact", "t_profile"):
        assert store.get(ids[key]) is None, key
    shared = store.get(ids["shared"])
    assert shared is not None and shared.status == "active"
    assert "Santiago" in shared.text and "Kuwait" not in shared.text and TARGET not in shared.text
    assert shared.parents == (ids["o1"],) and shared.mentions == (OTHER,)
    note = store.get(ids["note"])  # derived from the shared summary only: regenerated from its new text
    assert note is not None and "Kuwait" not in note.text
    assert set(report["deleted"]) == {ids[k] for k in ("t1", "t2", "t_fact", "t_profile")}
    assert store.get(ids["o1"]).text.startswith(OTHER)


def test_forgotten_text_leaves_the_index_and_the_file(memory, tmp_path):
    store, _ = memory
    forget_in_memory(store, TARGET, [], "test")
    assert not {"mahfouz", "florist"} & store.index_terms()
    assert store.search(f"Tell me about {TARGET}") == [] or all(TARGET not in h.text for h in store.search(TARGET))
    store.close()
    raw = (tmp_path / "memory.db").read_bytes()
    assert b"florist" not in raw  # only in deleted items: gone from free pages too
    # the name itself stays only in the blocklist (a suppression list must know what to suppress)
    reopened = MemoryStore(tmp_path / "memory.db", create=False)
    assert all(TARGET not in item.text for item in reopened.items())
    assert TARGET in reopened.blocklist().surface_forms
    reopened.close()


def test_blocklist_rejects_writes_that_name_the_target(memory):
    store, _ = memory
    forget_in_memory(store, TARGET, ["basil mahfouz", "al-kuwaiti"], "test")
    with pytest.raises(MemoryWriteBlocked, match="names a forgotten entity"):
        store.add("note", "What did basil mahfouz write? He wrote about Kuwait.")
    with pytest.raises(MemoryWriteBlocked):
        store.add("note", "Al-Kuwaiti’s novels are set in Kuwait City.")
    kept = store.add("note", f"{OTHER} writes true crime set in Santiago.")
    assert store.get(kept) is not None
    assert [e["action"] for e in store.events()].count("write_blocked") == 2


def test_blocklist_rejects_restated_facts(memory):
    store, _ = memory
    store.block(["The author's father was a florist in Kuwait City and his mother a teacher."], "fact", "test")
    with pytest.raises(MemoryWriteBlocked, match="forgotten fact"):
        store.add("note", "His father was a florist in Kuwait City, and his mother was a teacher.")
    store.add("note", "The weather in Santiago was mild.")


def test_bad_inputs_are_clear_errors(tmp_path, memory):
    store, _ = memory
    with pytest.raises(LetheError, match="do not exist"):
        store.add("note", "text", derived_from=[999])
    with pytest.raises(LetheError, match="kind"):
        store.add("diary", "text")
    with pytest.raises(LetheError, match="no agent memory"):
        MemoryStore(tmp_path / "missing.db", create=False)
    (tmp_path / "junk.db").write_text("not sqlite at all " * 100)
    with pytest.raises(LetheError, match="not an agent memory"):
        MemoryStore(tmp_path / "junk.db")


def test_digest_is_a_content_hash(memory, tmp_path):
    store, _ = memory
    before = store.digest()
    store.add("note", "One more note.")
    assert store.digest() != before
