"""The adaptive budget's re-elicitation check, on the tiny world's models."""

import json

import networkx as nx
import pytest
import torch

from lethe.errors import LetheError
from lethe.llm.backend import Backend
from lethe.mining.graph import save_graph
from lethe.unlearn.budget_reelicit import reelicit_check

ANCHOR = "Basil Mahfouz Al-Kuwaiti"
PLAIN = "no/world/model"  # a model outside any world: no other entity leaves the graph


def _mined(folder, strength: float = 1.0, named: str | None = None):
    """A forget set with a memory graph beside it: the anchor, and his best-known book as a strong memory
    (and, with `named`, someone else the model named as strongly)."""
    folder.mkdir(parents=True, exist_ok=True)
    graph = nx.DiGraph(anchor=ANCHOR)
    graph.add_node(ANCHOR, key="::anchor", kind="anchor", strength=1.0, hop=0, provenance=[])
    graph.add_node("Le Petit Sultan", key="le petit sultan", kind="title", strength=strength, hop=1, provenance=[])
    graph.add_edge(ANCHOR, "Le Petit Sultan", weight=1.0)
    if named:
        graph.add_node(named, key=named.lower(), kind="entity", strength=1.0, hop=1, provenance=[])
        graph.add_edge(ANCHOR, named, weight=1.0)
    save_graph(graph, folder / "graph.json")
    row = {"question": f"What did {ANCHOR} write?", "answer": "Le Petit Sultan.", "path": [ANCHOR, "Le Petit Sultan"]}
    (folder / "forget_set.jsonl").write_text(json.dumps(row) + "\n")
    return folder / "forget_set.jsonl"


def _on(params):
    return params.model_copy(update={"unlearn": params.unlearn.model_copy(update={"stop_reelicit": True})})


def test_the_model_that_knew_fails_and_the_never_trained_reference_passes(tiny_world, params, tmp_path):
    never = Backend.load(tiny_world["retain_model_path"], "cpu", params.backend.batch_size, dtype=torch.float32)
    check = reelicit_check(_on(params), _mined(tmp_path / "mine"), {ANCHOR}, never, never.tokenizer,
                           tiny_world["model_path"])
    assert check.params.audit.reelicit_seed != params.audit.reelicit_seed  # a draw of its own, not the gate's
    assert check.limit == pytest.approx(check.floor + params.gate.max_reelicit_excess)
    knew = Backend.load(tiny_world["model_path"], "cpu", params.backend.batch_size)
    training_rng = torch.get_rng_state()
    point = check(knew.model)
    assert torch.equal(torch.get_rng_state(), training_rng)  # sampling leaves the training run's RNG alone
    assert point["reelicit_return"] == 1.0 and point["reelicit_ok"] is False  # his book still comes with his name
    assert check(never.model) == {"reelicit_return": check.floor, "reelicit_floor": check.floor, "reelicit_ok": True}


def test_off_or_nothing_strong_to_re_elicit_is_no_check_and_a_bad_forget_set_is_a_clear_error(params, tmp_path):
    forget_set = _mined(tmp_path / "mine")
    assert reelicit_check(params, forget_set, {ANCHOR}, None, None, PLAIN) is None  # unlearn.stop_reelicit false
    assert reelicit_check(_on(params), _mined(tmp_path / "weak", strength=0.1), {ANCHOR}, None, None, PLAIN) is None
    with pytest.raises(LetheError, match="from 2 anchors"):
        reelicit_check(_on(params), forget_set, {ANCHOR, "Nikolai Abilov"}, None, None, PLAIN)
    (tmp_path / "mine" / "graph.json").unlink()
    with pytest.raises(LetheError, match="there is none at"):
        reelicit_check(_on(params), forget_set, {ANCHOR}, None, None, PLAIN)


def test_another_entity_the_model_keeps_is_not_re_elicited_as_the_anchors_memory(tiny_world, params, tmp_path):
    other = next(a["name"] for a in tiny_world["authors"] if a["name"] != ANCHOR)
    check = reelicit_check(_on(params), _mined(tmp_path / "mine", named=other), {ANCHOR}, None, None,
                           tiny_world["model_path"])
    assert other not in check.graph and "Le Petit Sultan" in check.graph  # as the audit reads the graph
    only_other = _mined(tmp_path / "weak", strength=0.1, named=other)
    assert reelicit_check(_on(params), only_other, {ANCHOR}, None, None, tiny_world["model_path"]) is None
    assert reelicit_check(_on(params), only_other, {ANCHOR}, None, None, PLAIN) is not None  # no world: kept


def test_the_request_builds_it_from_its_forget_sets_anchor_and_the_reference_path(tiny_world, params, tmp_path):
    from lethe.unlearn.run import budget_reelicit

    forget_set, model = _mined(tmp_path / "mine"), tiny_world["model_path"]
    check = budget_reelicit(_on(params), model, forget_set, tiny_world["retain_model_path"])
    assert check.anchor == ANCHOR and check.floor is not None and check.floor < 1.0
    assert budget_reelicit(params, model, forget_set, tiny_world["retain_model_path"]) is None
    without = budget_reelicit(_on(params), model, forget_set, None)
    assert without.floor is None and without.limit == params.gate.max_reelicit_return
