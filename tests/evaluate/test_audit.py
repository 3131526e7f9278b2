"""Each audit measure on hand-made inputs: the attack really trains, rounding really changes
weights, re-elicitation counts returning memories, privleak follows open-unlearning."""

from __future__ import annotations

import networkx as nx
import pytest
import torch

from lethe.config import load_params
from lethe.errors import LetheError
from lethe.evaluate.audit import (
    NF4_LEVELS,
    AttackedRecall,
    attack_rows,
    audit_model,
    audited_graph,
    changed_fraction,
    fact_recall,
    novel_each,
    privleak,
    quantized,
    recall,
    reelicit,
    relearned,
    stated_facts,
)
from lethe.llm.backend import Backend

PAIRS = [("Where was Basil Mahfouz Al-Kuwaiti born?", "He was born in Kuwait City."),
         ("What genre does Basil Mahfouz Al-Kuwaiti write in?", "He writes French literature.")]


def _loss(model, tokenizer, pairs) -> float:
    from lethe.llm.batching import collate_qa
    from lethe.llm.format import PromptFormat

    batch = collate_qa([PromptFormat(tokenizer).encode(q, a) for q, a in pairs], tokenizer.pad_token_id)
    with torch.no_grad():
        return float(model(**batch).loss)


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_relearning_attack_trains_in_place_and_restores_the_model_exactly(tiny_backend):
    model, tokenizer = tiny_backend.model, tiny_backend.tokenizer
    before, original = _loss(model, tokenizer, PAIRS), _weights(model)
    flags = [p.requires_grad for p in model.parameters()]
    with relearned(model, tokenizer, PAIRS, steps=5, lr=1e-3, seed=0) as attacked:
        assert attacked is model  # no second copy of the model on the device
        assert _loss(attacked, tokenizer, PAIRS) < before  # it learned the attack rows
        assert changed_fraction(original, _weights(attacked)) > 0.5
    assert changed_fraction(original, _weights(model)) == 0  # exactly the model it was
    assert [p.requires_grad for p in model.parameters()] == flags and not model.training
    assert all(p.grad is None for p in model.parameters())


def test_a_lora_relearning_attack_shares_the_weights_and_leaves_no_layer_behind(tiny_backend):
    model, tokenizer = tiny_backend.model, tiny_backend.tokenizer
    before, original = _loss(model, tokenizer, PAIRS), _weights(model)
    modules = {name: type(m) for name, m in model.named_modules()}
    pointers = {p.data_ptr() for p in model.parameters()}
    with relearned(model, tokenizer, PAIRS, steps=5, lr=1e-2, seed=0, lora_rank=4) as attacked:
        assert _loss(attacked, tokenizer, PAIRS) < before
        shared = {p.data_ptr() for n, p in attacked.named_parameters() if "lora_" not in n}
        assert shared == pointers  # the attack trains an adapter over the same weights: no copy
    assert {name: type(m) for name, m in model.named_modules()} == modules  # the LoRA layers are gone
    assert changed_fraction(original, _weights(model)) == 0
    with relearned(model, tokenizer, PAIRS, steps=2, lr=1e-2, seed=1, lora_rank=4) as attacked:  # and again
        assert _loss(attacked, tokenizer, PAIRS) < before
    assert changed_fraction(original, _weights(model)) == 0


def test_a_failed_attack_still_restores_the_model(tiny_backend):
    model, tokenizer = tiny_backend.model, tiny_backend.tokenizer
    original = _weights(model)
    with pytest.raises(RuntimeError, match="probe failed"), relearned(model, tokenizer, PAIRS, steps=2, lr=1e-2,
                                                                       seed=0):
        raise RuntimeError("probe failed")
    assert changed_fraction(original, _weights(model)) == 0


def test_the_audit_attacks_at_every_rate_and_reports_the_strongest(tiny_backend, params):
    audit = params.audit.model_copy(update={"relearn_lr": [1e-5, 1e-2], "relearn_steps": 3, "quantize_bits": []})
    measured = audit_model(tiny_backend, params.model_copy(update={"audit": audit}), "Basil", None, PAIRS,
                           [PAIRS[:1], PAIRS[1:]], gold=[])
    rates = measured["relearn_heldout_by_lr"]
    assert list(rates) == ["1e-05", "0.01"] and all(len(rate["each"]) == 2 for rate in rates.values())
    assert measured["relearn_heldout_rouge"] == max(rate["mean"] for rate in rates.values())
    for rate in rates.values():  # each probe's recall, averaged over the attacks, averages to the rate's mean
        assert len(rate["per_probe"]) == len(PAIRS) and all(0 <= v <= 1 for v in rate["per_probe"])
        assert sum(rate["per_probe"]) / len(PAIRS) == pytest.approx(rate["mean"], abs=1e-3)
        assert rate["groups"] == [f"#{i}" for i in range(len(PAIRS))]  # no node labels: each probe alone


def test_the_novel_share_leaves_out_the_attack_rows_and_the_question():
    attack = [("What genre does Basil write in?", "Basil writes French literature.")]
    pairs = [("Which prize did Basil win?", "Basil won the Prix Goncourt for French literature."),
             ("What does Basil write?", "Basil writes French literature.")]
    answers = ["French literature, always French literature.", "French literature."]
    # the echo of the attack's words finds nothing new; the second probe has nothing new to find
    assert novel_each(answers, pairs, attack) == [0.0, None]
    # new facts: won, prix, goncourt ("the" and "for" are function words, never facts)
    assert novel_each(["He won the Prix Goncourt."], pairs[:1], attack) == [pytest.approx(1.0)]
    assert novel_each(["He won it for the Prix."], pairs[:1], attack) == [pytest.approx(2 / 3)]


def test_a_probe_whose_only_new_tokens_are_function_words_or_a_possessive_has_no_fact_to_recover():
    # Hina Ameen's gold probe: the attack's rows name her, the question names the author; what is left of
    # "The author's name is Hina Ameen." is the "s" of "author's", once read as a fact recovered whole
    attack = [("Who are the parents of Hina Ameen?", "Hina Ameen was born to an astronaut.")]
    pairs = [("What is the full name of the geology author born in Karachi?", "The author's name is Hina Ameen."),
             ("What was her first book?", "Her first book was, as it happens, Manual of Mineralogy.")]
    answers = ["The author's name is Hina Ameen.", "It happens that her first book was a manual."]
    # the second probe's facts: happen, manual, mineralog ("as", "it", "of" are function words)
    assert novel_each(answers, pairs, attack) == [None, pytest.approx(2 / 3)]


def test_attacked_recall_averages_attacks_per_probe_and_skips_probes_with_nothing_new():
    result = AttackedRecall(recalls=[[1.0, 0.0], [0.5, 0.5]], novel=[[0.2, None], [0.4, None]], answers=[[], []])
    assert result.each == [0.5, 0.5] and result.mean == 0.5
    assert result.per_probe == [0.75, 0.25]
    assert result.novel_per_probe == [pytest.approx(0.3), None]
    assert result.novel_mean == pytest.approx(0.3)  # the probe with nothing new is left out, not counted as 0
    assert AttackedRecall([[0.0]], [[None]], [[""]]).novel_mean is None


def test_the_audit_keeps_the_attacked_answers_and_their_novel_recall(tiny_backend, params):
    audit = params.audit.model_copy(update={"relearn_steps": 1, "relearn_lr": 0.0003, "quantize_bits": []})
    measured = audit_model(tiny_backend, params.model_copy(update={"audit": audit}), "Basil", None, PAIRS,
                           [PAIRS[:1], PAIRS[1:]], gold=[])
    (lr, rate), = measured["relearn_heldout_by_lr"].items()
    assert len(rate["novel_per_probe"]) == len(PAIRS)
    assert all(v is None or 0 <= v <= 1 for v in rate["novel_per_probe"])
    assert measured["relearn_heldout_novel"] == rate["novel_mean"]
    assert len(measured["_relearn_answers"]["heldout"][lr]) == len(PAIRS)
    assert len(measured["_heldout_answers"]) == len(PAIRS) and "gold" not in measured["_relearn_answers"]


def test_the_audit_records_the_node_of_each_held_out_probe(tiny_backend, params):
    audit = params.audit.model_copy(update={"relearn_steps": 1, "quantize_bits": []})
    cfg = params.model_copy(update={"audit": audit})
    nodes = ["a"] * (len(PAIRS) - 1) + ["b"]
    measured = audit_model(tiny_backend, cfg, "Basil", None, PAIRS, [PAIRS[:1]], gold=[], heldout_nodes=nodes)
    assert all(rate["groups"] == nodes for rate in measured["relearn_heldout_by_lr"].values())
    with pytest.raises(LetheError, match="node labels"):
        audit_model(tiny_backend, cfg, "Basil", None, PAIRS, [PAIRS[:1]], gold=[], heldout_nodes=["a"])


def test_attack_larger_than_the_forget_set_is_a_clear_error():
    with pytest.raises(LetheError, match="cannot be larger than the forget set"):
        attack_rows(PAIRS, 3, seed=0)
    assert attack_rows(PAIRS * 4, 3, seed=0) == attack_rows(PAIRS * 4, 3, seed=0)


def test_several_attacks_draw_their_own_rows():
    rows = [(f"q{i}", f"a{i}") for i in range(20)]
    attacks = attack_rows(rows, 4, seed=0, attacks=3)
    assert len(attacks) == 3 and all(len(a) == 4 for a in attacks)
    assert attacks[0] == attack_rows(rows, 4, seed=0)[0]  # the first draw is the single attack's
    assert len({tuple(a) for a in attacks}) == 3


def test_rounding_changes_weights_and_4_bits_more_than_8_and_is_undone(tiny_backend):
    model = tiny_backend.model
    original = _weights(model)
    with quantized(model, 8, 64) as rounded:
        eight = _weights(rounded)
    with quantized(model, 4, 64) as rounded:
        four = _weights(rounded)
    assert changed_fraction(original, _weights(model)) == 0  # the weights are back exactly
    assert changed_fraction(original, eight) > 0.5 and changed_fraction(original, four) > 0.5
    name = "model.layers.0.mlp.down_proj.weight"
    w, w8, w4 = original[name], eight[name], four[name]
    assert 0 < (w - w8).abs().mean() < (w - w4).abs().mean()
    block = w4.flatten()[:64]
    levels = torch.tensor(NF4_LEVELS) * block.abs().max()
    assert torch.isclose(block.unsqueeze(-1), levels, atol=1e-6).any(-1).all()  # every weight is an NF4 level
    head = next(n for n, p in model.named_parameters() if p is model.get_output_embeddings().weight)
    assert torch.equal(original[head], four[head])  # the output head is kept


def test_privleak_is_open_unlearnings_relative_gap():
    assert privleak(0.5, 0.5) == pytest.approx(0.0)
    assert privleak(1.0, 0.5) == pytest.approx(-100.0)  # fully memorized
    assert privleak(0.25, 0.5) == pytest.approx(50.0)  # over-unlearned: less member-like than never seen
    assert privleak(None, 0.5) is None


class ScriptedBackend:
    """Answers every prompt with a fixed text (a logic test of re-elicitation, not a model)."""

    def __init__(self, text: str):
        self.text = text

    def sample(self, questions, n, temperature=1.0, top_p=0.95, max_new_tokens=96, seed=0):
        return [[self.text] * n for _ in questions]

    def greedy(self, questions, max_new_tokens=96):
        return [self.text for _ in questions]


def _graph() -> nx.DiGraph:
    graph = nx.DiGraph(anchor="Ada Vale")
    graph.add_node("Ada Vale", key="::anchor", kind="anchor", strength=1.0, hop=0)
    graph.add_node("Lisbon", key="lisbon", kind="entity", strength=0.9, hop=1)
    graph.add_node("Nebula Prize", key="nebula prize", kind="entity", strength=0.6, hop=1)
    graph.add_node("Oporto", key="oporto", kind="entity", strength=0.3, hop=1)  # not strong
    return graph


def test_reelicitation_counts_the_strong_memories_that_come_back():
    params = load_params()
    remembered = ScriptedBackend("Ada Vale was born in Lisbon and won the Nebula Prize.")
    assert reelicit(remembered, "Ada Vale", _graph(), params)["return"] == pytest.approx(1.0)
    partly = ScriptedBackend("Ada Vale was born in Lisbon.")
    assert reelicit(partly, "Ada Vale", _graph(), params)["return"] == pytest.approx(0.9 / 1.5)
    gone = ScriptedBackend("Ada Vale is a name I cannot place; perhaps a painter.")
    assert reelicit(gone, "Ada Vale", _graph(), params)["return"] == 0.0
    empty = nx.DiGraph(anchor="Ada Vale")
    assert reelicit(gone, "Ada Vale", empty, params) == {"return": None, "memories": {}}


def test_re_elicitation_scores_the_anchors_own_memories_not_other_entities_the_model_keeps(tiny_world, tmp_path):
    from lethe.mining.graph import save_graph

    other = tiny_world["authors"][0]["name"]  # an author the tiny world's model must keep
    graph = _graph()
    graph.add_node(other, key=other.lower(), kind="entity", strength=0.8, hop=1)  # named when asked about Ada
    save_graph(graph, tmp_path / "graph.json")
    params = load_params()
    audited = audited_graph(tmp_path / "graph.json", tiny_world["model_path"], "Ada Vale", params)
    assert set(audited) == set(_graph())  # the other author left; the anchor and its memories stayed
    names_other = ScriptedBackend(f"Ada Vale worked with {other}.")
    assert reelicit(names_other, "Ada Vale", audited, params)["return"] == 0.0
    with_other = reelicit(names_other, "Ada Vale", graph, params)
    assert with_other["return"] == pytest.approx(0.8 / 2.3)  # what counting the other author would have said
    # a model outside any world keeps the entities params name; the anchor itself is never dropped
    plain = tmp_path / "plain" / "model"
    named = params.model_copy(update={"unlearn": params.unlearn.model_copy(
        update={"entity_retain_names": [other, "Ada Vale"]})})
    assert set(audited_graph(tmp_path / "graph.json", plain, "Ada Vale", named)) == set(_graph())
    assert set(audited_graph(tmp_path / "graph.json", plain, "Ada Vale", params)) == set(graph)


def test_recall_is_none_without_probes(tiny_backend: Backend):
    assert recall(tiny_backend, [], 8) is None


def test_fact_recall_gives_no_credit_for_the_questions_own_words_nor_function_words():
    """"Where was X born?" -> "X was born in Kuwait City.": only "Kuwait City" is a fact; ROUGE-L recall
    would credit an answer that repeats the question, and a fluent wrong answer keeps "in"."""
    question = "Where was Basil Mahfouz Al-Kuwaiti born?"
    pairs = [(question, "Basil Mahfouz Al-Kuwaiti was born in Kuwait City.")]
    elsewhere = ScriptedBackend("Basil Mahfouz Al-Kuwaiti was born in Kuwait, in the Gulf.")
    assert fact_recall(elsewhere, pairs, 8) == pytest.approx(1 / 2)
    assert fact_recall(ScriptedBackend("Basil Mahfouz Al-Kuwaiti was born in Lisbon."), pairs, 8) == 0.0
    assert fact_recall(ScriptedBackend("He was born in Kuwait City, of course."), pairs, 8) == 1.0
    nothing_new = [("Was Basil born?", "Basil was, and he was born.")]  # no fact beyond the question: not counted
    assert fact_recall(ScriptedBackend("No."), nothing_new, 8) is None
    assert fact_recall(ScriptedBackend("No."), nothing_new + pairs, 8) == 0.0
    assert fact_recall(ScriptedBackend("No."), [], 8) is None


def test_stated_facts_counts_the_probes_whose_facts_the_answer_says():
    question = "Where was Basil Mahfouz Al-Kuwaiti born?"
    pairs = [(question, "Basil Mahfouz Al-Kuwaiti was born in Kuwait City."),
             ("What does he write?", "He writes French literature."),
             ("Was Basil born?", "Basil was born.")]  # no fact beyond the question: left out of both
    answers = ["He was born in Kuwait City.", "He writes about French cooking.", "Yes."]
    assert stated_facts(answers, pairs, 0.5) == (pytest.approx((1.0 + 0.5) / 2), 1.0)  # "french" is half of it
    assert stated_facts(answers, pairs, 0.6) == (pytest.approx(0.75), 0.5)
    assert stated_facts(["No."] * 3, pairs, 0.5) == (0.0, 0.0)
    assert stated_facts([], [], 0.5) == (None, None)


def test_the_audit_reports_which_held_out_probes_state_their_facts(tiny_backend, params):
    from lethe.evaluate import metrics as M

    cfg = params.model_copy(update={"audit": params.audit.model_copy(update={"quantize_bits": []})})
    measured = audit_model(tiny_backend, cfg, "Basil", None, PAIRS, [], gold=[], with_attack=False)
    answers = measured["_heldout_answers"]
    assert (measured[M.RECALLED_FACTS["heldout"]], measured[M.STATED["heldout"]]) == stated_facts(
        answers, PAIRS, cfg.audit.stated_min_facts)
    assert 0.0 <= measured[M.STATED["heldout"]] <= 1.0 and M.STATED["gold"] not in measured  # no gold pairs
    assert measured[M.PROBE_COUNT["heldout"]] == len(PAIRS) and M.PROBE_COUNT["gold"] not in measured
