from collections import Counter

import networkx as nx
import pytest

from lethe.config import SampleParams
from lethe.supervision.walks import random_walks, step_probabilities


def star(weights: dict[str, float], strength: float = 0.8) -> nx.DiGraph:
    graph = nx.DiGraph(anchor="T")
    for node, weight in weights.items():
        graph.add_edge("T", node, weight=weight, strength=strength)
        graph.add_edge(node, "T", weight=1.0, strength=1.0)  # back-edges are never walked
    return graph


def test_first_steps_follow_weights_without_visit_penalty():
    graph = star({"a": 0.7, "b": 0.2, "c": 0.1})
    counts: Counter[str] = Counter()
    # kept paths are deduplicated, so count first steps over many single-walk runs
    for seed in range(3000):
        paths = random_walks(graph, SampleParams(walks=1, max_length=1, alpha=0.0, eta=0.0, seed=seed))
        counts[paths[0].nodes[1]] += 1
    total = sum(counts.values())
    assert counts["a"] / total == pytest.approx(0.7, abs=0.04)
    assert counts["b"] / total == pytest.approx(0.2, abs=0.04)
    assert counts["c"] / total == pytest.approx(0.1, abs=0.03)


def test_visit_penalty_reweights():
    probs = step_probabilities(star({"a": 0.5, "b": 0.5}), "T", Counter({"a": 3}), alpha=1.0)
    # a: 0.5 * 1/4, b: 0.5 * 1 -> 0.2 / 0.8
    assert probs["a"] == pytest.approx(0.2) and probs["b"] == pytest.approx(0.8)


def test_paths_never_revisit_or_return_to_anchor():
    graph = star({"a": 0.5, "b": 0.5})
    graph.add_edge("a", "b", weight=1.0, strength=0.9)
    graph.add_edge("b", "a", weight=1.0, strength=0.9)
    for path in random_walks(graph, SampleParams(walks=50, max_length=5, alpha=1.0, eta=0.0, seed=0)):
        assert path.nodes[0] == "T" and "T" not in path.nodes[1:]
        assert len(set(path.nodes)) == len(path.nodes)


def test_eta_filters_weak_paths():
    weak = star({"a": 1.0}, strength=0.2)
    assert random_walks(weak, SampleParams(walks=5, max_length=3, alpha=1.0, eta=0.3, seed=0)) == []
    assert random_walks(weak, SampleParams(walks=5, max_length=3, alpha=1.0, eta=0.2, seed=0))
