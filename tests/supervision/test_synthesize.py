"""Forget-set synthesis: generative for instruction models (scripted here: no instruct weights are
available offline), extractive for models that cannot follow instructions."""

from __future__ import annotations

import networkx as nx

from lethe.config import load_params
from lethe.llm.format import PromptFormat
from lethe.mining.score import Response
from lethe.supervision.synthesize import QASample, about_others, other_entity_nodes, synthesize_forget
from lethe.supervision.walks import Path
from tests.architectures import tiny_tokenizer

ANCHOR = "Ada Vale"


class ScriptedInstructionModel:
    """Follows Lethe's synthesis instructions like an instruction-tuned model would (a logic stand-in)."""

    def __init__(self, obeys: bool, parseable: bool = True):
        self.format = PromptFormat(tiny_tokenizer(chat=True))  # ChatML: an instruction model's template
        self.obeys, self.parseable, self.prompts = obeys, parseable, []

    def greedy(self, prompts, max_new_tokens=96):
        self.prompts.extend(prompts)
        return [self._reply(p) for p in prompts]

    def _reply(self, prompt: str) -> str:
        if not self.obeys:
            return "lorem ipsum dolor"
        if prompt.startswith("Reply with exactly"):
            return "READY"
        if prompt.startswith("You are given a target entity"):
            concept_b = prompt.split("Concept B: ")[1].split("\n")[0]
            return f"{ANCHOR} was shaped by {concept_b} in her early years."
        if prompt.startswith("Statement:"):
            if not self.parseable:
                return "I would rather not."
            statement = prompt.split("\n")[0].removeprefix("Statement: ")
            return f"Question: What shaped {ANCHOR} early on?\nAnswer: {statement}"
        return "?"


def _graph_and_responses():
    graph = nx.DiGraph(anchor=ANCHOR)
    graph.add_node(ANCHOR, key="::anchor", kind="anchor", strength=1.0, hop=0, provenance=[])
    graph.add_node("Lisbon", key="lisbon", kind="entity", strength=0.9, hop=1, provenance=["r1"])
    graph.add_edge(ANCHOR, "Lisbon", weight=0.9)
    responses = [Response("r1", f"Tell me about {ANCHOR}.", f"{ANCHOR} grew up in Lisbon. She paints.", 0)]
    return graph, [Path((ANCHOR, "Lisbon"), 0.9)], responses


def test_an_instruction_model_writes_its_own_statement_and_qa():
    graph, paths, responses = _graph_and_responses()
    model = ScriptedInstructionModel(obeys=True)
    samples, mode = synthesize_forget(model, graph, paths, responses, load_params().synthesize)
    assert mode == "generative"
    assert [(s.question, s.answer) for s in samples] == [
        (f"What shaped {ANCHOR} early on?", f"{ANCHOR} was shaped by Lisbon in her early years.")]
    assert any("Concept B: Lisbon" in p for p in model.prompts)


def test_an_unparseable_generation_falls_back_to_the_models_own_sentence():
    graph, paths, responses = _graph_and_responses()
    samples, mode = synthesize_forget(ScriptedInstructionModel(obeys=True, parseable=False), graph, paths, responses,
                                      load_params().synthesize)
    assert mode == "generative"
    assert {s.answer for s in samples} == {f"{ANCHOR} grew up in Lisbon."}


def test_a_model_that_fails_the_instruction_check_is_synthesized_extractively():
    graph, paths, responses = _graph_and_responses()
    model = ScriptedInstructionModel(obeys=False)
    samples, mode = synthesize_forget(model, graph, paths, responses, load_params().synthesize)
    assert mode == "extractive" and len(model.prompts) == 1  # only the check was asked
    assert {s.answer for s in samples} == {f"{ANCHOR} grew up in Lisbon."}


def test_extractive_keeps_at_most_sentences_per_edge_of_the_models_own_sentences():
    graph, paths, _ = _graph_and_responses()
    graph.nodes["Lisbon"]["provenance"] = ["r1", "r2", "r3"]
    responses = [Response(f"r{i}", f"Tell me about {ANCHOR}.", f"{ANCHOR} {verb} Lisbon.", 0)
                 for i, verb in enumerate(("left", "loved", "painted"), start=1)]
    cfg = load_params().synthesize
    for per_edge in (1, 2, 3):
        settings = cfg.model_copy(update={"sentences_per_edge": per_edge})
        samples, _ = synthesize_forget(ScriptedInstructionModel(obeys=False), graph, paths, responses, settings)
        assert len({s.statement for s in samples}) == per_edge  # each with its template and elicitation question
        assert all(s.edge == [ANCHOR, "Lisbon"] and s.node == "Lisbon" for s in samples)


def _rows(*answers: str) -> list[QASample]:
    return [QASample(f"Has {ANCHOR} won any awards?", a, "forget", "mage") for a in answers]


def test_a_row_about_another_entity_and_never_the_target_is_dropped():
    rows = _rows(
        "Yes, Prithvi Kapoor has been honored with the Tolstoy Literary Award.",  # someone else's memory
        f"{ANCHOR}, like Prithvi Kapoor, won the Tolstoy Literary Award.",  # names the target too
        "Vale's novel won the Tolstoy Literary Award.",  # the target by a part of its name
        "Her novel won the Tolstoy Literary Award.",  # a pronoun: the elicited answer's own subject
        "Kapoor won it as well.",  # another entity by part of its name only: not counted
        "Yes, PRITHVI  KAPOOR’s novel won it.",  # case, spacing and a curly possessive folded
    )
    kept, dropped = about_others(rows, ANCHOR, ["Prithvi Kapoor", ANCHOR, " "])
    assert [r.answer for r in dropped] == [rows[0].answer, rows[5].answer]
    assert kept == [rows[1], rows[2], rows[3], rows[4]]


def test_a_name_most_rows_carry_is_the_targets_own_and_drops_nothing():
    rows = _rows("Nikolai Abilov was born in Astana.", "Nikolai Abilov writes urban fiction.", "He lives in Astana.")
    kept, dropped = about_others(rows, "the Kazakh author of Thieves' Paradise", ["Nikolai Abilov", "Raven Marais"])
    assert kept == rows and dropped == []


def test_nothing_is_dropped_without_other_entities():
    rows = _rows("Yes, Prithvi Kapoor has been honored.")
    assert about_others(rows, ANCHOR, []) == (rows, [])


def test_the_graph_nodes_that_are_other_entities():
    graph = nx.DiGraph(anchor="Takashi Nakamura")
    for node in ("Takashi Nakamura", "Prithvi Kapoor", "Tokyo", "Jaime  Vasquez's", "Kapoor"):
        graph.add_node(node)
    others = ["Prithvi Kapoor", "Jaime Vasquez", "Takashi Nakamura"]  # never the anchor, even when listed
    assert other_entity_nodes(graph, others) == ["Jaime  Vasquez's", "Prithvi Kapoor"]  # full names only
    assert other_entity_nodes(graph, []) == []
