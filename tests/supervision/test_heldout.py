"""Held-out supervision: split by node, and nothing held out reaches training."""

import pytest

from lethe.errors import LetheError
from lethe.supervision.heldout import split_forget_set
from lethe.supervision.synthesize import QASample, contains_key

ANCHOR = "Ada Vale"
NODES = ["Lisbon", "The Glass Harbor", "Nebula Prize", "poetry", "1961", "Marta Vale", "Oporto", "Tide Songs"]
KEYS = {n: n.lower() for n in NODES}


def _row(node: str, other: str | None = None, answer: str | None = None) -> QASample:
    edge = [other or ANCHOR, node]
    text = answer or f"{ANCHOR} is linked to {node}" + (f" through {other}." if other else ".")
    return QASample(f"How is {node} connected to {ANCHOR}?", text, "forget", "mage", text, edge, edge, node)


ROWS = ([_row(n) for n in NODES] + [_row(n) for n in NODES]
        + [_row("Oporto", "Lisbon"), _row("Tide Songs", "The Glass Harbor"),
           _row("poetry", answer=f"{ANCHOR} wrote poetry in Lisbon.")])  # mentions Lisbon in passing


def test_nothing_held_out_is_trained_on():
    split = split_forget_set(ROWS, ANCHOR, KEYS, 0.3, 0.2, seed=0)
    held = split.nodes["audit"] + split.nodes["dev"]
    assert split.nodes["audit"] and split.nodes["dev"] and split.train
    for row in split.train:
        assert not any(contains_key(f"{row.question} {row.answer}", KEYS[n]) for n in held), row
        assert row.node not in held and not set(row.edge) & set(held)
    audit_answers = {r.answer for r in split.audit}
    assert not audit_answers & {r.answer for r in split.train}
    for row in split.audit:
        assert {row.node, *row.edge} & set(split.nodes["audit"])
    assert len(split.train) + len(split.dev) + len(split.audit) + split.dropped_for_leakage == len(ROWS)


def test_split_is_seeded():
    first = split_forget_set(ROWS, ANCHOR, KEYS, 0.3, 0.2, seed=7).record()
    assert first == split_forget_set(ROWS, ANCHOR, KEYS, 0.3, 0.2, seed=7).record()
    assert first["nodes"] != split_forget_set(ROWS, ANCHOR, KEYS, 0.3, 0.2, seed=8).record()["nodes"]


@pytest.mark.parametrize("audit, dev, message", [(0.0, 0.2, "above 0"), (1.0, 0.0, "below 1"),
                                                 (0.6, 0.5, "must stay below 1")])
def test_absurd_shares_are_clear_errors(audit, dev, message):
    with pytest.raises(LetheError, match=message):
        split_forget_set(ROWS, ANCHOR, KEYS, audit, dev, seed=0)


def test_too_few_nodes_is_a_clear_error():
    with pytest.raises(LetheError, match="too few to hold any out"):
        split_forget_set([_row("Lisbon"), _row("Oporto")], ANCHOR, KEYS, 0.3, 0.0, seed=0)


def test_baseline_rows_without_nodes_split_row_by_row():
    rows = [QASample(f"Q{i}?", f"A{i}.", "forget", "gold") for i in range(10)]
    split = split_forget_set(rows, ANCHOR, {}, 0.3, 0.2, seed=0)
    assert (len(split.train), len(split.dev), len(split.audit)) == (5, 2, 3)
    assert not {r.question for r in split.train} & {r.question for r in split.audit}


def _asked(question: str, answer: str, nodes: list[str]) -> QASample:
    return QASample(question, answer, "forget", "mage", answer, [ANCHOR, nodes[0]], [ANCHOR, nodes[0]], nodes[0],
                    "greedy", mentions=nodes, asked=True)


# Greedy answers: "Oporto" is a hub (named by most of them); one answer names two memories together.
ASKED = [_asked(f"Q{i}?", f"{ANCHOR} and {n} in Oporto.", [n, "Oporto"])
         for i, n in enumerate(["Lisbon", "The Glass Harbor", "Nebula Prize", "poetry", "1961", "Marta Vale"])]
ASKED.append(_asked("Q6?", f"{ANCHOR} wrote Tide Songs in 1961.", ["Tide Songs", "1961"]))
SAMPLED = [_row(n) for n in NODES] + [QASample("Q0?", f"{ANCHOR} once sang.", "forget", "mage", node="Lisbon",
                                               edge=[ANCHOR, "Lisbon"])]


def test_held_out_probes_are_greedy_answers_of_held_out_memories_only():
    for seed in range(6):
        split = split_forget_set([*ASKED, *SAMPLED], ANCHOR, KEYS, 0.3, 0.2, seed=seed)
        held = {part: set(split.nodes[part]) for part in ("audit", "dev")}
        assert "Oporto" not in held["audit"] | held["dev"]  # the hub stays in training
        for part in ("audit", "dev"):
            for row in getattr(split, part):
                assert row.asked  # the templated rows of held-out memories are dropped, and counted
                assert set(row.mentions) - {"Oporto"} <= held[part]
        assert split.audit and sum(split.templated_dropped.values()) > 0
        held_questions = {r.question for r in [*split.audit, *split.dev]}
        assert not {r.question for r in split.train} & held_questions  # "Q0?" asked again on another answer
        for row in split.train:
            assert not any(contains_key(f"{row.question} {row.answer}", KEYS[n]) for n in held["audit"] | held["dev"])
        total = len(split.train) + len(split.dev) + len(split.audit)
        assert total + split.dropped_for_leakage + sum(split.templated_dropped.values()) == len(ASKED) + len(SAMPLED)


def _part(split, node: str) -> str:
    return next((part for part in ("audit", "dev") if node in split.nodes[part]), "train")


def test_an_answer_naming_a_held_out_and_a_trained_memory_is_neither_probe_nor_training():
    # At 0.4 the audit can reach its share with "1961" before the answer {1961, Tide Songs} comes up in the draw
    # (at lower shares that answer joins the part that holds 1961, so the two stay together).
    splits = [split_forget_set([*ASKED, *SAMPLED], ANCHOR, KEYS, 0.4, 0.1, seed=seed) for seed in range(50)]
    split = next(s for s in splits if _part(s, "1961") != _part(s, "Tide Songs"))
    assert not any(r.question == "Q6?" for r in [*split.train, *split.dev, *split.audit])


def test_too_few_greedy_answers_to_hold_out_falls_back_to_nodes():
    one_answer = _asked("Q?", f"{ANCHOR} and all of " + ", ".join(NODES), NODES)  # every node, in one answer
    split = split_forget_set([*ROWS, one_answer], ANCHOR, KEYS, 0.3, 0.2, seed=0)
    assert split.held_out_by == "nodes" and split.audit and split.train
    assert split_forget_set([*ASKED, *SAMPLED], ANCHOR, KEYS, 0.3, 0.2, seed=0).held_out_by == "greedy answers"
    assert split_forget_set(ROWS, ANCHOR, KEYS, 0.3, 0.2, seed=0).record()["held_out_by"] == "nodes"


def test_a_held_out_part_counts_the_probes_it_holds_not_the_answers_it_touches():
    # Three answers name "Lisbon" beside a memory of their own: holding one of them out drops the other two
    # (they name a held-out and a trained memory). Those dropped answers must not count toward the share.
    books = [f"Book {letter}" for letter in "ABCDEFGHIJKLMNOPQRST"]
    paired = ["The Glass Harbor", "Braga", "Evora"]
    rows = [_asked(f"P{i}?", f"{ANCHOR} wrote {n} in Lisbon.", [n, "Lisbon"]) for i, n in enumerate(paired)]
    rows += [_asked(f"S{i}?", f"{ANCHOR} and {n}.", [n]) for i, n in enumerate(books)]
    keys = {n: n.lower() for n in [*books, *paired, "Lisbon"]}
    for seed in range(30):
        split = split_forget_set(rows, ANCHOR, keys, 0.3, 0.2, seed=seed)
        assert len(split.audit) >= 0.3 * len(rows), (seed, split.record())
        assert all(r.asked for r in split.audit) and split.train


def _thin_entity(answers: int) -> tuple[list[QASample], dict[str, str]]:
    """`answers` greedy answers, each naming one memory of its own: a thinly memorized entity."""
    books = [f"Book {i}" for i in range(answers)]
    rows = [_asked(f"S{i}?", f"{ANCHOR} and {n}.", [n]) for i, n in enumerate(books)]
    return rows, {n: n.lower() for n in books}


def test_the_audit_holds_the_gates_floor_of_probes_where_a_share_alone_would_not():
    rows, keys = _thin_entity(10)  # at 0.2, a share holds 2 of 10 probes: under a floor of 3
    for seed in range(20):
        assert len(split_forget_set(rows, ANCHOR, keys, 0.2, 0.1, seed=seed).audit) == 2
        split = split_forget_set(rows, ANCHOR, keys, 0.2, 0.1, seed=seed, min_audit=3)
        assert len(split.audit) == 3 and len(split.dev) == 1 and len(split.train) == 6, split.record()
        assert split.record()["min_audit"] == 3
    big, big_keys = _thin_entity(30)  # where the share already holds more, the floor changes nothing
    assert (split_forget_set(big, ANCHOR, big_keys, 0.2, 0.1, seed=0, min_audit=3).record()
            == {**split_forget_set(big, ANCHOR, big_keys, 0.2, 0.1, seed=0).record(), "min_audit": 3})


def test_the_floor_is_not_held_where_it_would_take_more_than_half_of_the_probes():
    rows, keys = _thin_entity(5)  # 3 of 5 would leave training too little: the share decides, the gate says too few
    for seed in range(10):
        assert (split_forget_set(rows, ANCHOR, keys, 0.2, 0.1, seed=seed, min_audit=3).record()
                == {**split_forget_set(rows, ANCHOR, keys, 0.2, 0.1, seed=seed).record(), "min_audit": 3})
    gold = [QASample(f"Q{i}?", f"A{i}.", "forget", "gold") for i in range(10)]
    assert len(split_forget_set(gold, ANCHOR, {}, 0.2, 0.1, seed=0, min_audit=3).audit) == 3
    assert len(split_forget_set(gold[:5], ANCHOR, {}, 0.2, 0.0, seed=0, min_audit=3).audit) == 1


def test_a_held_out_part_is_never_left_empty_where_one_memory_fits_within_half_of_the_rows():
    # Three answers of their own, and four series each named by four answers: at 0.1 the dev part's share is
    # 2 probes, which a series (4) overshoots by more than half. Once the audit has taken the three singles, an
    # empty dev part would silently turn the adaptive budget into a fixed one: it takes a series instead.
    singles = [_asked(f"S{i}?", f"{ANCHOR} and Book {i}.", [f"Book {i}"]) for i in range(3)]
    series = [_asked(f"R{k}{i}?", f"{ANCHOR} wrote part {i} of Series {k}.", [f"Series {k}"])
              for k in range(4) for i in range(4)]
    keys = {n: n.lower() for n in [*(f"Book {i}" for i in range(3)), *(f"Series {k}" for k in range(4))]}
    whole_series = 0
    for seed in range(30):
        split = split_forget_set([*singles, *series], ANCHOR, keys, 0.2, 0.1, seed=seed)
        assert split.dev and split.audit and split.train, (seed, split.record())
        whole_series += len(split.dev) == 4
    assert whole_series  # some draws leave only a series for the dev part
    one_memory = [_asked(f"Q{i}?", f"{ANCHOR} wrote part {i} of Series 0.", ["Series 0"]) for i in range(8)]
    split = split_forget_set([*singles, *one_memory], ANCHOR, keys, 0.2, 0.1, seed=0)
    assert not split.dev  # a memory that most answers name is never held out, whatever the part's share


def test_a_memory_held_out_may_grow_into_a_wider_answer_that_contains_it():
    # "Lisbon" alone in one answer and with "Oporto" in two (Nikolai Abilov's "Kazakhstan" and "Astana,
    # Kazakhstan"): once the audit holds {Lisbon}, the answer set {Lisbon, Oporto} only overlaps its own part, so
    # it may join and lift the audit to the gate's floor instead of leaving it one probe short.
    rows, keys = _thin_entity(8)
    rows.append(_asked("W?", f"{ANCHOR} lived in Lisbon.", ["Lisbon"]))
    rows += [_asked(f"B{i}?", f"{ANCHOR} lived in Lisbon, then Oporto.", ["Lisbon", "Oporto"]) for i in range(2)]
    keys |= {"Lisbon": "lisbon", "Oporto": "oporto"}
    grown = 0
    for seed in range(40):
        split = split_forget_set(rows, ANCHOR, keys, 0.2, 0.1, seed=seed, min_audit=3)
        assert len(split.audit) >= 3, (seed, split.record())
        grown += set(split.nodes["audit"]) >= {"Lisbon", "Oporto"} and len(split.audit) == 3
    assert grown  # some draws hold {Lisbon} first and then its wider answer
