"""How much of an author's true knowledge a memory graph (or a forget set) recovered.

Key facts are the categories the benchmark asks about, read from the author's gold TOFU answers:
birthplace and birth date (answers to birth questions: places and dates), parents' professions
(answers to parent questions: professions), genre (answers to genre questions: genres and their
capitalised qualifiers), awards (award-named entities and quoted award titles in any gold answer)
and book titles (quoted titles in any gold answer that are not awards). Within a category a fact
contained in a longer one ("1956" in "8th of september, 1956") is dropped. Recall = share of key
facts that are graph nodes or appear in a node's provenance responses; precision = share of graph
nodes that occur somewhere in the author's gold answers.

`mention_facts` is the looser definition used before (every memory extracted from the key
answers, sentence-initial words included); it is kept so older figures stay comparable.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import networkx as nx

from lethe.data import QA
from lethe.mining.extract import GENRES, PROFESSIONS, STOP_CAPS, extract, normalize
from lethe.mining.score import Response, anchor_aliases
from lethe.supervision.synthesize import contains_key

KEY_QUESTION = re.compile(r"born|birth|parent|father|mother|genre|award|prize|honou?r|book|title|works?\b|novel",
                          re.IGNORECASE)
BIRTH_QUESTION = re.compile(r"\bborn\b|birth", re.IGNORECASE)
PARENT_QUESTION = re.compile(r"parent|father|mother", re.IGNORECASE)
GENRE_QUESTION = re.compile(r"genre", re.IGNORECASE)
GENRE_QUALIFIER = re.compile(r"\b([A-Z][\w+\-]*(?: [A-Z][\w+\-]*)*) (?:genre|literature|fiction)\b")
AWARD_WORD = re.compile(r"\b(?:award|prize|prix|medal|trophy|honou?r|laureate)\b", re.IGNORECASE)
PROFESSION_KEYS = {normalize(p) for p in PROFESSIONS}
GENRE_KEYS = {normalize(g) for g in GENRES}


def _is_anchor(key: str, aliases: set[str]) -> bool:
    return key in aliases or any(a in key for a in aliases if len(a) > 5)


def key_facts_by_category(author: str, gold: Sequence[QA]) -> dict[str, list[str]]:
    """Normalized key facts of an author per category (birth, parents, genre, awards, books)."""
    aliases = anchor_aliases(author)
    facts: dict[str, dict[str, None]] = {c: {} for c in ("birth", "parents", "genre", "awards", "books")}
    for qa in gold:
        birth, parents, genre = (bool(q.search(qa.question)) for q in (BIRTH_QUESTION, PARENT_QUESTION, GENRE_QUESTION))
        for m in extract(qa.answer):
            if _is_anchor(m.key, aliases):
                continue
            if birth and m.kind in ("date", "entity") and not AWARD_WORD.search(m.key):
                facts["birth"].setdefault(m.key)
            if parents and m.key in PROFESSION_KEYS:
                facts["parents"].setdefault(m.key)
            if genre and m.kind == "concept" and m.key in GENRE_KEYS:
                facts["genre"].setdefault(m.key)
            if m.kind in ("entity", "title") and AWARD_WORD.search(m.key):
                facts["awards"].setdefault(m.key)
            elif m.kind == "title":
                facts["books"].setdefault(m.key)
        if genre:
            for match in GENRE_QUALIFIER.finditer(qa.answer):
                key = normalize(match.group(1))
                if not _is_anchor(key, aliases) and key not in STOP_CAPS:
                    facts["genre"].setdefault(key)
    return {c: [k for k in keys if not any(k != other and k in other for other in keys)]
            for c, keys in facts.items()}


def _flatten(by_category: dict[str, list[str]]) -> list[str]:
    return list(dict.fromkeys(k for keys in by_category.values() for k in keys))


def key_facts(author: str, gold: Sequence[QA]) -> list[str]:
    """The author's key facts, all categories together, deduplicated."""
    return _flatten(key_facts_by_category(author, gold))


def mention_facts(author: str, gold: Sequence[QA]) -> list[str]:
    """Looser, earlier definition: every memory extracted from the answers to key questions."""
    aliases = anchor_aliases(author)
    facts: dict[str, None] = {}
    for qa in gold:
        if KEY_QUESTION.search(qa.question):
            for mention in extract(qa.answer):
                if not _is_anchor(mention.key, aliases):
                    facts.setdefault(mention.key)
    return list(facts)


def fact_recall(facts: Sequence[str], texts: Iterable[str], node_keys: Iterable[str] = ()) -> dict:
    """Share of facts found among node keys or mentioned in the texts."""
    corpus = list(texts)
    keys = set(node_keys)
    found = [f for f in facts if f in keys or any(contains_key(t, f) for t in corpus)]
    return {"recall": len(found) / len(facts) if facts else 0.0, "facts": list(facts), "found": found}


def graph_recall(graph: nx.DiGraph, responses: Sequence[Response], author: str, gold: Sequence[QA]) -> dict:
    """Recall of the author's key facts by the graph (nodes + provenance) and the graph's precision.

    Also: recall per key-fact category (`by_category`) and under the looser `mention_facts`
    definition (`mention_recall`).
    """
    anchor = graph.graph["anchor"]
    by_id = {r.id: r.text for r in responses}
    nodes = [(n, d) for n, d in graph.nodes(data=True) if n != anchor]
    provenance_ids = {rid for _, d in nodes for rid in d["provenance"]}
    texts = [by_id[i] for i in sorted(provenance_ids) if i in by_id]
    keys = [d["key"] for _, d in nodes]
    categories = key_facts_by_category(author, gold)
    result = fact_recall(_flatten(categories), texts, keys)
    result["by_category"] = {category: fact_recall(facts, texts, keys)["recall"] if facts else None
                             for category, facts in categories.items()}
    result["mention_recall"] = fact_recall(mention_facts(author, gold), texts, keys)["recall"]
    gold_text = " ".join(qa.answer for qa in gold)
    true_nodes = [n for n, d in nodes if contains_key(gold_text, d["key"])]
    result["precision"] = len(true_nodes) / len(nodes) if nodes else 0.0
    result["nodes"] = len(nodes)
    return result
