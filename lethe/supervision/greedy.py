"""MAGE's questions asked once more, greedily: the memories the model states when asked.

Elicitation samples each question N times at temperature; most forget rows are one of those samples under
a templated question ("In the context of X, how is A connected to B?") that the model never learned to
answer. As held-out probes such rows test nothing: on the ten forget05 authors of the default world the
starting model's greedy answer stated the facts of 2 of 121 templated probes and of 18 of 25 probes asked
with an elicitation question (stop 51). And a budget that stops on them stops on noise.

Here every distinct elicitation question is answered greedily. An answer that names memory nodes of the
graph the question itself does not name becomes one row: the question, and the answer up to its last
sentence naming one, with every node it names (`mentions`). The row is `asked`: the model answers the
question with this very text, so its recall before unlearning is what the model says, not a sampling
accident. Rows the model gives with little confidence are left out (`greedy_rows`).
"""

from __future__ import annotations

import math
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
                skip_nodes: Iterable[str] = (), min_confidence: float = 0.0) -> list[QASample]:
    """One asked forget row per question whose greedy answer names a memory node (see the module
    docstring). `skip_nodes` (another entity the model keeps) never make a row on their own.

    The answer is the greedy answer up to its last sentence that names a memory (a prefix: what the model
    says, in its order). A row whose answer the model gives with a per-token probability (geometric
    mean, `answer_confidence`) under `min_confidence` is left out: a low-confidence answer is one the
    smallest change to the weights rewrites, so its recall falling shows nothing forgotten.
    The row's `node` is the strongest memory it names; `edge` is (the anchor, that node)."""
    anchor = graph.graph["anchor"]
    skip = set(skip_nodes) | {anchor}
    by_strength = sorted((n for n in graph.nodes if n not in skip),
                         key=lambda n: (-graph.nodes[n].get("strength", 0.0), n))
    keys = {n: graph.nodes[n].get("key", n.lower()) for n in by_strength}
    rows = []
    for question, answer in zip(questions, backend.greedy(list(questions), max_new_tokens) if questions else []):
        sentences = split_sentences(answer)
        naming = [i for i, sentence in enumerate(sentences) if memories_named(sentence, question, keys)]
        if not naming:
            continue
        text = " ".join(sentences[: naming[-1] + 1])
        named = memories_named(text, question, keys)
        rows.append(QASample(question, text, "forget", "mage", statement=text, path=[anchor, named[0]],
                             edge=[anchor, named[0]], node=named[0], response_id="greedy", mentions=named,
                             asked=True))
    if min_confidence > 0 and rows:
        confidence = answer_confidence(backend, [(row.question, row.answer) for row in rows])
        rows = [row for row, c in zip(rows, confidence) if c >= min_confidence]
    return rows


def answer_confidence(backend: Backend, pairs: Sequence[tuple[str, str]]) -> list[float]:
    """The geometric mean of each answer's token probabilities given its question (0 for an empty one)."""
    return [math.exp(sum(lps) / len(lps)) if lps else 0.0 for lps in backend.answer_logprobs(pairs)]


def confident_sampled_rows(backend: Backend, rows: Sequence[QASample],
                           min_confidence: float) -> tuple[list[QASample], int]:
    """(rows kept, sampled rows dropped): every asked row, and each sampled row whose answer the model gives
    after its question with at least `min_confidence` per-token probability (`answer_confidence`). 0 keeps all."""
    sampled = [i for i, row in enumerate(rows) if not row.asked]
    if min_confidence <= 0 or not sampled:
        return list(rows), 0
    confidence = answer_confidence(backend, [(rows[i].question, rows[i].answer) for i in sampled])
    dropped = {i for i, c in zip(sampled, confidence) if c < min_confidence}
    return [row for i, row in enumerate(rows) if i not in dropped], len(dropped)
