"""The target's surface forms, from its MAGE memory graph, for the memory write-time blocklist."""

from __future__ import annotations

import networkx as nx

from lethe.mining.score import alias_pattern, anchor_aliases


def surface_forms(graph: nx.DiGraph, anchor: str, title_min_strength: float) -> list[str]:
    """The anchor, its name parts (as MAGE scores them) and the titles the graph ties to it.

    Places, genres and other shared entities are left out on purpose: blocking "Kuwait" would
    stop the agent from writing about every other Kuwaiti author.
    """
    aliases = anchor_aliases(anchor)
    pattern = alias_pattern(aliases)
    titles = [n for n, d in graph.nodes(data=True)
              if d.get("kind") == "title" and d.get("strength", 0.0) >= title_min_strength and not pattern.search(n)]
    return sorted({anchor, *aliases, *titles})
