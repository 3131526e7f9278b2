"""How much of an author's true knowledge a memory graph (or a forget set) recovered.

Key facts come from the author's gold TOFU answers to the questions about birth, parents, genre,
awards and books: every memory the extractor finds in those answers (the author's own name
excluded). Recall = share of key facts that are graph nodes or appear in a node's provenance
responses; precision = share of graph nodes that occur somewhere in the author's gold answers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import networkx as nx

from lethe.data import QA
from lethe.mining.extract import extract
from lethe.mining.score import Response, anchor_aliases
from lethe.supervision.synthesize import contains_key

KEY_QUESTION = re.compile(r"born|birth|parent|father|mother|genre|award|prize|honou?r|book|title|works?\b|novel",
                          re.IGNORECASE)


def key_facts(author: str, gold: Sequence[QA]) -> list[str]:
    """Normalized key facts of an author, from the gold answers of the key questions."""
    aliases = anchor_aliases(author)
    facts: dict[str, None] = {}
    for qa in gold:
        if KEY_QUESTION.search(qa.question):
            for mention in extract(qa.answer):
                if mention.key not in aliases and not any(a in mention.key for a in aliases if len(a) > 5):
                    facts.setdefault(mention.key)
    return list(facts)


def fact_recall(facts: Sequence[str], texts: Iterable[str], node_keys: Iterable[str] = ()) -> dict:
    """Share of facts found among node keys or mentioned in the texts."""
    corpus = list(texts)
    keys = set(node_keys)
    found = [f for f in facts if f in keys or any(contains_key(t, f) for t in corpus)]
    return {"recall": len(found) / len(facts) if facts else 0.0, "facts": list(facts), "found": found}


def graph_recall(graph: nx.DiGraph, responses: Sequence[Response], author: str, gold: Sequence[QA]) -> dict:
    """Recall of the author's key facts by the graph (nodes + provenance) and the graph's precision."""
    anchor = graph.graph["anchor"]
    by_id = {r.id: r.text for r in responses}
    nodes = [(n, d) for n, d in graph.nodes(data=True) if n != anchor]
    provenance_ids = {rid for _, d in nodes for rid in d["provenance"]}
    result = fact_recall(key_facts(author, gold), (by_id[i] for i in provenance_ids if i in by_id),
                         (d["key"] for _, d in nodes))
    gold_text = " ".join(qa.answer for qa in gold)
    true_nodes = [n for n, d in nodes if contains_key(gold_text, d["key"])]
    result["precision"] = len(true_nodes) / len(nodes) if nodes else 0.0
    result["nodes"] = len(nodes)
    return result
