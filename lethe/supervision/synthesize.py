"""MAGE step 5: forget QA from graph paths, and the neighbor set to preserve.

Two modes for the forget set:
- ``extractive`` (models that cannot follow instructions, like the world model): each statement
  is one of the model's own elicited sentences mentioning both nodes of an edge, so supervision
  matches exactly what the model memorized; the question names the target with the path node as
  context, and the answer (the loss span) is the statement.
- ``generative`` (instruction models): the model writes the statement and the QA with the
  paper's prompts; an edge whose output cannot be parsed falls back to extractive.
``auto`` picks generative only when the model passes an instruction-following check.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import networkx as nx

from lethe.config import SynthesizeParams
from lethe.llm.backend import Backend
from lethe.mining.extract import normalize, split_sentences
from lethe.mining.score import Response, alias_pattern, anchor_aliases, carried_by_most
from lethe.supervision.walks import Path

STATEMENT_PROMPT = (
    "You are given a target entity and two related concepts from a knowledge graph.\n"
    "Target: {anchor}\nConcept A: {u}\nConcept B: {v}\n"
    "Write one atomic, factual sentence that states how Concept A and Concept B are connected "
    "in the context of the target. Output only the sentence."
)
QA_PROMPT = (
    "Statement: {statement}\n"
    "Write one question about {anchor} whose answer is given by the statement, and its short answer.\n"
    "Format exactly:\nQuestion: <question>\nAnswer: <answer>"
)
NEIGHBOR_PROMPTS = ("Tell me about {node}.", "What do you know about {node}?")
_QA_RE = re.compile(r"Question:\s*(?P<q>.+?)\s*Answer:\s*(?P<a>.+)", re.S)


@dataclass
class QASample:
    """One row of a forget or neighbor set (the answer is the loss span)."""

    question: str
    answer: str
    kind: str  # forget | neighbor
    source: str  # mage | gold | directqa
    statement: str = ""
    path: list[str] = field(default_factory=list)
    edge: list[str] = field(default_factory=list)
    node: str = ""
    response_id: str = ""
    mentions: list[str] = field(default_factory=list)  # every memory node the answer names (greedy rows)
    asked: bool = False  # the answer is the model's greedy answer to the question (lethe.supervision.greedy)

    def to_dict(self) -> dict:
        return asdict(self)


def contains_key(text: str, key: str) -> bool:
    """Whole-word, case/possessive-insensitive test that `text` mentions the memory `key`."""
    folded = re.sub(r"'s\b", "", text.replace("’", "'").lower())
    return re.search(r"(?<![\w])" + re.escape(key) + r"(?![\w])", folded) is not None


def forget_question(anchor: str, u: str, v: str, kind: str, is_root: bool) -> str:
    """A question about the target that carries the path node(s) as context."""
    if not is_root:
        return f"In the context of {anchor}, how is {u} connected to {v}?"
    return {
        "date": f"What happened in the life of {anchor} around {v}?",
        "title": f'What can you tell me about "{v}" by {anchor}?',
        "concept": f"How is {v} connected to {anchor}?",
    }.get(kind, f"What is the connection between {anchor} and {v}?")


def follows_instructions(backend: Backend) -> bool:
    """True when the model obeys a trivial formatting instruction (then generative mode is used)."""
    if not backend.format.uses_chat_template or "Question:" in backend.format.prompt_text("x"):
        return False
    reply = backend.greedy(["Reply with exactly the single word: READY"], max_new_tokens=8)[0]
    return reply.strip().strip(".!").upper() == "READY"


def _sentences_with(responses: Sequence[Response], keys: Sequence[str]) -> list[tuple[str, Response]]:
    found = []
    for response in responses:
        for sentence in split_sentences(response.text):
            if all(contains_key(sentence, k) for k in keys):
                found.append((sentence, response))
    return found


def _extractive_edge(graph: nx.DiGraph, anchor: str, u: str, v: str, responses: dict[str, Response],
                     path: Path, per_edge: int = 2) -> list[QASample]:
    data_v = graph.nodes[v]
    is_root = u == anchor
    candidates = [responses[rid] for rid in data_v["provenance"] if rid in responses]
    keys = [data_v["key"]] if is_root else [graph.nodes[u]["key"], data_v["key"]]
    matches = _sentences_with(candidates, keys)
    if not matches and not is_root:  # co-elicited: v recalled when asked about u
        own = [r for r in candidates if r.context == graph.nodes[u]["key"]]
        matches = _sentences_with(own, [data_v["key"]])
    samples = []
    for sentence, response in matches[:per_edge]:
        base = dict(kind="forget", source="mage", statement=sentence, path=list(path.nodes),
                    edge=[u, v], node=v, response_id=response.id)
        samples.append(QASample(forget_question(anchor, u, v, data_v["kind"], is_root), sentence, **base))
        if is_root:  # the elicitation question itself, answered by the model's own sentence
            samples.append(QASample(response.prompt, sentence, **base))
    return samples


def _generative_edge(backend: Backend, anchor: str, u: str, v: str, path: Path) -> list[QASample]:
    statement = backend.greedy([STATEMENT_PROMPT.format(anchor=anchor, u=u, v=v)], 96)[0].strip()
    reply = backend.greedy([QA_PROMPT.format(anchor=anchor, statement=statement)], 128)[0]
    match = _QA_RE.search(reply)
    if not statement or not match:
        return []
    return [QASample(match["q"].strip(), match["a"].strip(), "forget", "mage", statement,
                     list(path.nodes), [u, v], v)]


def dedupe(samples: Sequence[QASample]) -> list[QASample]:
    """Drop repeated (question, answer) pairs (case and spacing folded), keeping the first."""
    seen, out = set(), []
    for sample in samples:
        key = (" ".join(sample.question.lower().split()), " ".join(sample.answer.lower().split()))
        if key not in seen:
            seen.add(key)
            out.append(sample)
    return out


def about_others(samples: Sequence[QASample], anchor: str,
                 others: Sequence[str]) -> tuple[list[QASample], list[QASample]]:
    """(kept, dropped): a forget row whose answer names another entity the model must keep (its full
    name) and never the target is that entity's memory, not the target's: the model, asked about the
    target, told what it knows of someone else ("Has Nikolai Abilov won any awards?" -> "Yes, Prithvi
    Kapoor has been honored ..."). Forgetting it, or holding it out as an audit probe, would demand the
    collateral the gate forbids.

    A name that more than half the rows carry is the target's own under another name (an anchor given
    as a description or a nickname), never another entity: it is not counted."""
    aliases = anchor_aliases(anchor)
    texts = [" ".join(sample.answer.replace("’", "'").split()) for sample in samples]
    candidates = {normalize(n) for n in others} - aliases - {""}
    names = candidates - carried_by_most(candidates, texts)
    target, other = alias_pattern(aliases), alias_pattern(names)
    kept, dropped = [], []
    for sample, text in zip(samples, texts):
        (dropped if other.search(text) and not target.search(text) else kept).append(sample)
    return kept, dropped


def other_entity_nodes(graph: nx.DiGraph, others: Sequence[str]) -> list[str]:
    """The graph's nodes that are another entity the model must keep, by full name (normalized): the
    model, asked about the target, named someone else ("Prithvi Kapoor" in Takashi Nakamura's graph).
    They are not the target's memories (with synthesize.drop_about_others, `about_others` drops the rows
    that carry them), and the validation's strong-node coverage does not count them."""
    names = {normalize(n) for n in others} - {""}
    return sorted(node for node in graph.nodes if node != graph.graph.get("anchor") and normalize(node) in names)


def synthesize_forget(backend: Backend, graph: nx.DiGraph, paths: Sequence[Path],
                      responses: Sequence[Response], cfg: SynthesizeParams) -> tuple[list[QASample], str]:
    """Forget QA for every adjacent pair on the kept paths; returns (samples, mode used)."""
    anchor = graph.graph["anchor"]
    mode = cfg.mode
    if mode == "auto":
        mode = "generative" if follows_instructions(backend) else "extractive"
    by_id = {r.id: r for r in responses}
    samples: list[QASample] = []
    done_edges: set[tuple[str, str]] = set()
    for path in paths:
        for u, v in zip(path.nodes, path.nodes[1:]):
            if (u, v) in done_edges:
                continue
            done_edges.add((u, v))
            made = _generative_edge(backend, anchor, u, v, path) if mode == "generative" else []
            samples.extend(made or _extractive_edge(graph, anchor, u, v, by_id, path, cfg.sentences_per_edge))
    return dedupe(samples)[: cfg.max_forget], mode


def strip_target(text: str, aliases: set[str]) -> str:
    """The text without any sentence that names the target."""
    pattern = alias_pattern(aliases)
    return " ".join(s for s in split_sentences(text) if not pattern.search(s.replace("’", "'")))


def synthesize_neighbors(backend: Backend, graph: nx.DiGraph, cfg: SynthesizeParams) -> list[QASample]:
    """Knowledge about the graph's neighbors, elicited about each neighbor alone, target removed."""
    anchor = graph.graph["anchor"]
    aliases = anchor_aliases(anchor)
    pattern = alias_pattern(aliases)
    nodes = sorted(
        (n for n, d in graph.nodes(data=True) if n != anchor and d["kind"] in ("entity", "concept", "title")
         and not pattern.search(n)),
        key=lambda n: (-graph.nodes[n]["strength"], n),
    )[: cfg.neighbor_nodes]
    questions = [p.format(node=n) for n in nodes for p in NEIGHBOR_PROMPTS]
    if not questions:
        return []
    answers = backend.sample(questions, cfg.neighbor_samples, seed=cfg.seed)
    samples = []
    for question, texts, node in zip(questions, answers, [n for n in nodes for _ in NEIGHBOR_PROMPTS]):
        for text in texts:
            clean = strip_target(text, aliases)
            if len(clean) >= 3:
                samples.append(QASample(question, clean, "neighbor", "mage", node=node, path=[node]))
    return dedupe(samples)[: cfg.max_neighbor]
