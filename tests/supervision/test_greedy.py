"""Greedy rows: each elicitation question answered once more, greedily; a row where the answer names a
memory the question does not."""

from __future__ import annotations

import math

import networkx as nx
import pytest

from lethe.mining.score import Response
from lethe.supervision.greedy import (
    answer_confidence,
    confident_sampled_rows,
    distinct_questions,
    greedy_rows,
    memories_named,
)
from lethe.supervision.synthesize import QASample

ANCHOR = "Ada Vale"
ANSWERS = {
    "Where was Ada Vale born?": "Ada Vale sings. She was born in Lisbon. She loves the sea.",
    "What awards has Ada Vale received?": "Ada Vale won the Nebula Prize for Tide Songs.",
    "How is Lisbon related to Ada Vale?": "Ada Vale lived in Lisbon.",  # names only what the question does
    "Who are Ada Vale's friends?": "Ada Vale is close to Marta Vale.",  # another entity the model keeps
    "What does Ada Vale eat?": "Ada Vale likes soup.",  # no memory at all
}


class GreedyModel:
    """Answers each question from a script, and records what it was asked (a logic stand-in)."""

    def __init__(self):
        self.asked: list[str] = []

    def greedy(self, questions, max_new_tokens=96):
        self.asked.extend(questions)
        return [ANSWERS[q] for q in questions]

    def answer_logprobs(self, pairs):  # the awards answer is a guess: two tokens at probability 0.25
        return [[math.log(0.25)] * 2 if "Nebula" in a else [math.log(0.9)] * 3 for _, a in pairs]


def _graph() -> nx.DiGraph:
    graph = nx.DiGraph(anchor=ANCHOR)
    graph.add_node(ANCHOR, key="::anchor", strength=1.0, hop=0)
    for name, strength in (("Lisbon", 0.9), ("Nebula Prize", 0.5), ("Tide Songs", 0.7), ("Marta Vale", 0.8)):
        graph.add_node(name, key=name.lower(), strength=strength, hop=1)
    return graph


def test_a_row_per_answer_that_names_a_memory_the_question_does_not():
    model = GreedyModel()
    rows = greedy_rows(model, _graph(), list(ANSWERS), max_new_tokens=32, skip_nodes=["Marta Vale"])
    assert model.asked == list(ANSWERS)
    assert [(r.question, r.answer) for r in rows] == [
        ("Where was Ada Vale born?", "Ada Vale sings. She was born in Lisbon."),  # up to the last memory named
        ("What awards has Ada Vale received?", "Ada Vale won the Nebula Prize for Tide Songs.")]
    awards = rows[1]
    assert awards.asked and awards.kind == "forget" and awards.source == "mage"
    assert awards.mentions == ["Tide Songs", "Nebula Prize"]  # strongest first
    assert awards.node == "Tide Songs" and awards.edge == [ANCHOR, "Tide Songs"]


def test_an_answer_the_model_is_unsure_of_is_left_out():
    rows = greedy_rows(GreedyModel(), _graph(), list(ANSWERS), max_new_tokens=32, min_confidence=0.5)
    assert [r.question for r in rows] == ["Where was Ada Vale born?", "Who are Ada Vale's friends?"]
    assert answer_confidence(GreedyModel(), [("q", "Nebula"), ("q", "x")]) == pytest.approx([0.25, 0.9])


def test_no_question_asks_the_model_nothing():
    model = GreedyModel()
    assert greedy_rows(model, _graph(), [], max_new_tokens=32) == []
    assert model.asked == []


def test_memories_named_ignores_what_the_question_names():
    keys = {"Lisbon": "lisbon", "Tide Songs": "tide songs"}
    assert memories_named("Lisbon's Tide Songs", "Why Lisbon?", keys) == ["Tide Songs"]


def test_distinct_questions_keep_the_first_order():
    responses = [Response(str(i), q, "", 0) for i, q in enumerate(["B?", "A?", "B?", "C?"])]
    assert distinct_questions(responses) == ["B?", "A?", "C?"]


def test_sampled_rows_the_model_is_unsure_of_are_dropped_and_asked_rows_are_kept():
    sampled = [QASample("How is Lisbon linked to Ada Vale?", text, "forget", "mage", text)
               for text in ("Ada Vale won the Nebula Prize.", "Ada Vale lived in Lisbon.")]
    asked = QASample("What awards has Ada Vale received?", "Ada Vale won the Nebula Prize.", "forget", "mage",
                     asked=True)  # as unsure as the first sampled row, but its own confidence rule kept it
    rows = [sampled[0], asked, sampled[1]]
    kept, dropped = confident_sampled_rows(GreedyModel(), rows, 0.5)
    assert kept == [asked, sampled[1]] and dropped == 1
    assert confident_sampled_rows(GreedyModel(), rows, 0.0) == (rows, 0)  # off: nothing is scored
    assert confident_sampled_rows(GreedyModel(), [asked], 0.5) == ([asked], 0)
