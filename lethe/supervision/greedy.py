"""MAGE's questions asked once more, greedily: the memories the model states when asked.

Elicitation samples each question N times at temperature; most forget rows are one of those samples under
a templated question ("In the context of X, how is A connected to B?") that the model never learned to
answer. As held-out probes such rows test nothing: on the ten forget05 authors of the default world the
starting model's greedy answer stated the facts of 2 of 121 templated probes and of 18 of 25 probes asked
with an elicitation question (stop 51). And a budget that stops on them stops on noise.

Here every distinct elicitation question is answered greedily. An answer's sentences that name memory
nodes of the graph the question itself does not name become one row: the question, and those sentences
as the answer, with every node they name (`mentions`). The row is `asked`: a question the model answers
with this very text, so its recall before unlearning is what the model says, not a sampling accident.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import networkx as nx

from lethe.llm.backend import Backend
from lethe.mining.extract import split_sentences
from lethe.mining.score import Response
from lethe.supervision.synthesize import QASample, contains_key


def distinct_questions(responses: Iterable[Response]) -> list[str]:
    """The elicitation questions, each once, in the order first asked."""
    return list(dict.fromkeys(r.prompt for r in responses))


def memories_named(text: str, question: str, keys: dict[str, str]) -> list[str]:
    """The nodes (name -> key) `text` names and `question` does not, in the order of `keys`."""
    return [node for node, key in keys.items() if contains_key(text, key) and not contains_key(question, key)]


def greedy_rows(backend: Backend, graph: nx.DiGraph, questions: Sequence[str], max_new_tokens: int,
                skip_nodes: Iterable[str] = ()) -> list[QASample]:
    """One asked forget row per question whose greedy answer names a memory node (see the module
    docstring). `skip_nodes` (another entity the model keeps) never make a row on their own.

    The row's `node` is the strongest memory it names; `edge` is (the anchor, that node)."""
    anchor = graph.graph["anchor"]
    skip = set(skip_nodes) | {anchor}
    by_strength = sorted((n for n in graph.nodes if n not in skip),
                         key=lambda n: (-graph.nodes[n].get("strength", 0.0), n))
    keys = {n: graph.nodes[n].get("key", n.lower()) for n in by_strength}
    rows = []
    for question, answer in zip(questions, backend.greedy(list(questions), max_new_tokens) if questions else []):
        sentences = [s for s in split_sentences(answer) if memories_named(s, question, keys)]
        named = memories_named(" ".join(sentences), question, keys)
        if not named:
            continue
        text = " ".join(sentences)
        rows.append(QASample(question, text, "forget", "mage", statement=text, path=[anchor, named[0]],
                             edge=[anchor, named[0]], node=named[0], response_id="greedy", mentions=named,
                             asked=True))
    return rows
