"""MAGE step 4: strength-weighted random walks from the anchor through the memory graph.

p(v | u) ~ w(u, v) * (1 / (1 + visits(v)))^alpha, visits counted over all walks so later walks
spread to memories not yet covered. Edges back to the anchor are not walked. A path is kept when
the mean *strength* of its edges (c(u,v)/N, how consistently the model co-recalls the pair) is at
least eta: the transition weights w are normalized per node and would penalize rich nodes.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

import networkx as nx

from lethe.config import SampleParams


@dataclass(frozen=True)
class Path:
    """A walk: nodes from the anchor, and its mean edge strength."""

    nodes: tuple[str, ...]
    quality: float


def step_probabilities(graph: nx.DiGraph, node: str, visits: Counter[str], alpha: float) -> dict[str, float]:
    """Normalized transition probabilities out of `node` (anchor excluded)."""
    anchor = graph.graph.get("anchor")
    scores = {
        v: data["weight"] * (1.0 / (1.0 + visits[v])) ** alpha
        for _, v, data in graph.out_edges(node, data=True)
        if v != anchor
    }
    total = sum(scores.values())
    return {v: s / total for v, s in scores.items()} if total > 0 else {}


def random_walks(graph: nx.DiGraph, cfg: SampleParams) -> list[Path]:
    """R walks of at most L edges; kept paths (quality >= eta), deduplicated, in order found."""
    anchor = graph.graph["anchor"]
    rng = random.Random(cfg.seed)
    visits: Counter[str] = Counter()
    kept: dict[tuple[str, ...], Path] = {}
    for _ in range(cfg.walks):
        nodes = [anchor]
        while len(nodes) <= cfg.max_length:
            probs = step_probabilities(graph, nodes[-1], visits, cfg.alpha)
            probs = {v: p for v, p in probs.items() if v not in nodes}
            if not probs:
                break
            choices, weights = zip(*sorted(probs.items()))
            nxt = rng.choices(choices, weights=weights)[0]
            visits[nxt] += 1
            nodes.append(nxt)
        if len(nodes) < 2:
            continue
        strengths = [graph.edges[u, v]["strength"] for u, v in zip(nodes, nodes[1:])]
        quality = sum(strengths) / len(strengths)
        if quality >= cfg.eta:
            kept.setdefault(tuple(nodes), Path(tuple(nodes), quality))
    return list(kept.values())
