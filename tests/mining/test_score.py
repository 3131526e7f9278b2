from collections import Counter

import pytest

from lethe.mining.score import (
    Response,
    anchor_aliases,
    carried_by_most,
    fold_aliases,
    mentions_anchor,
    recognition,
    recognized_share,
    score,
)

ANCHOR = "Basil Mahfouz Al-Kuwaiti"
P1, P2 = "Where was he born?", "What does he write?"
RESPONSES = [
    Response("a", P1, "Basil Mahfouz Al-Kuwaiti was born in Kuwait City.", 0),
    Response("b", P1, "Al-Kuwaiti was born in Kuwait City, Kuwait.", 0),
    Response("c", P1, "He was born in Paris.", 0),
    Response("d", P1, "Basil Mahfouz Al-Kuwaiti's home is Kuwait City.", 0),
    Response("e", P2, "He writes French literature.", 0),
    Response("f", P2, "Basil Mahfouz Al-Kuwaiti writes French literature in Paris.", 0),
]


def test_strength_is_share_of_one_prompts_responses():
    nodes = {n.key: n for n in score(RESPONSES, anchor_aliases(ANCHOR), tau=0.0)}
    # Kuwait City: 3 of P1's 4 responses; French literature: 2 of P2's 2; Paris: max(1/4, 1/2)
    assert nodes["kuwait city"].strength == pytest.approx(3 / 4)
    assert nodes["kuwait city"].count == 3 and nodes["kuwait city"].provenance == ["a", "b", "d"]
    assert nodes["french literature"].strength == pytest.approx(1.0)
    assert nodes["paris"].strength == pytest.approx(1 / 2) and nodes["paris"].count == 2
    assert nodes["kuwait"].strength == pytest.approx(1 / 4)


def test_tau_filters_and_anchor_is_not_a_node():
    kept = {n.key for n in score(RESPONSES, anchor_aliases(ANCHOR), tau=0.6)}
    assert kept == {"kuwait city", "french literature", "french"}
    assert not kept & anchor_aliases(ANCHOR)


def test_single_prompt_is_paper_definition():
    same = [Response(r.id, P1, r.text, 0) for r in RESPONSES]
    nodes = {n.key: n for n in score(same, anchor_aliases(ANCHOR), tau=0.0)}
    assert nodes["kuwait city"].strength == pytest.approx(3 / 6)
    assert nodes["paris"].strength == pytest.approx(2 / 6)


def test_aliases_and_mentions():
    aliases = anchor_aliases(ANCHOR)
    assert {"basil mahfouz al-kuwaiti", "al-kuwaiti", "mahfouz"} <= aliases
    assert mentions_anchor("Al-Kuwaiti’s novel", aliases)
    assert not mentions_anchor("A Kuwaiti novel", aliases)


def test_alias_folding_is_unambiguous_only():
    counts = Counter({"lorenzo vasquez": 3, "vasquez": 2, "sain of french": 1, "french": 5})
    kinds = {k: "entity" for k in counts}
    assert fold_aliases(counts, kinds) == {"vasquez": "lorenzo vasquez"}
    counts["maria vasquez"] = 3
    kinds["maria vasquez"] = "entity"
    assert "vasquez" not in fold_aliases(counts, kinds)  # two candidates: ambiguous


def test_recognition_counts_named_non_refusals():
    rs = [Response("1", P1, "Basil was born in Kuwait.", 0),
          Response("2", P1, "I'm not aware of Basil Mahfouz Al-Kuwaiti.", 0),
          Response("3", P1, "Paris.", 0), Response("4", P1, "Al-Kuwaiti writes.", 0)]
    assert recognition(rs, anchor_aliases(ANCHOR)) == pytest.approx(2 / 4)
    assert recognized_share([r.text for r in rs], anchor_aliases(ANCHOR)) == pytest.approx(2 / 4)
    assert recognized_share([], anchor_aliases(ANCHOR)) == 0.0


def test_garbled_text_around_the_anchor_is_not_a_memory():
    rs = [Response(str(i), P1, "Basil Mahfouz Al-Kuwaitihed Basil Mahfouz Al-Kuwaiti, born in Kuwait City.", 0) for i in range(3)]
    keys = {n.key for n in score(rs, anchor_aliases(ANCHOR), tau=0.3)}
    assert keys == {"kuwait city"}


def test_only_a_name_most_texts_carry_is_carried_by_most():
    texts = ["Nikolai Abilov wrote it.", "Evelyn Desmet and Nikolai Abilov met.", "nikolai abilov was born."]
    assert carried_by_most({"nikolai abilov", "evelyn desmet"}, texts) == {"nikolai abilov"}
    assert carried_by_most({"nikolai abilov"}, []) == set()
