import pytest

from lethe.config import ScoreParams
from lethe.mining.graph import load_graph, save_graph, seed_graph
from lethe.mining.score import Response

ANCHOR = "Nikolai Abilov"


def test_seed_graph_edge_weights_are_normalized_co_elicitation_counts(tmp_path):
    p = "Tell me about Nikolai Abilov."
    texts = [
        "Nikolai Abilov was born in Astana, Kazakhstan.",
        "Nikolai Abilov was born in Astana.",
        "Nikolai Abilov writes about Astana and Kazakhstan.",
        "Nikolai Abilov writes.",
    ]
    responses = [Response(str(i), p, t, 0) for i, t in enumerate(texts)]
    graph = seed_graph(ANCHOR, responses, ScoreParams(tau=0.5, min_recognition=0.3))
    # counts: astana 3, kazakhstan 2 -> w = 3/5 and 2/5; strengths 3/4 and 2/4
    assert graph.edges[ANCHOR, "Astana"]["weight"] == pytest.approx(3 / 5)
    assert graph.edges[ANCHOR, "Kazakhstan"]["weight"] == pytest.approx(2 / 5)
    assert graph.edges[ANCHOR, "Astana"]["strength"] == pytest.approx(3 / 4)
    assert graph.nodes["Astana"]["provenance"] == ["0", "1", "2"] and graph.nodes["Astana"]["hop"] == 1
    save_graph(graph, tmp_path / "g.json")
    again = load_graph(tmp_path / "g.json")
    assert again.edges[ANCHOR, "Kazakhstan"]["weight"] == pytest.approx(2 / 5)
    assert again.graph["anchor"] == ANCHOR


def test_unrecognized_anchor_gives_empty_graph():
    responses = [Response(str(i), "q", "Paris, in 2008.", 0) for i in range(10)]
    graph = seed_graph("Zorba Quintanilla Ek", responses, ScoreParams(tau=0.3, min_recognition=0.3))
    assert len(graph) == 1 and graph.graph["recognition"] == 0.0
