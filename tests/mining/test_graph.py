import networkx as nx
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


class ScriptedModel:
    """A model stand-in: answers each prompt with `reply(prompt)` and records what it was asked."""

    def __init__(self, reply):
        self.reply = reply
        self.prompts: list[str] = []

    def sample(self, prompts, n, temperature, top_p, max_new_tokens, seed):
        self.prompts.extend(prompts)
        return [[self.reply(p)] * n for p in prompts]


def _expand_params(adaptive: bool, **kw):
    from lethe.config import ExpandParams

    base = dict(hops=2, samples=2, prompts=["How is {node} related to {anchor}?"], max_nodes_per_hop=5,
                adaptive_stop=adaptive, stop_threshold=0.3, max_model_calls=1000)
    return ExpandParams(**{**base, **kw})


def _elicit_params():
    from lethe.config import ElicitParams

    return ElicitParams(samples=2, prompts=["Tell me about {anchor}."], temperature=0.6, top_p=0.95,
                        max_new_tokens=32, seed=0)


def _reply(prompt: str) -> str:
    if prompt.startswith("Tell me about"):
        return 'Nikolai Abilov was born in Astana and wrote "Kazakhstan Echoes".'
    if "Kazakhstan Echoes" in prompt:  # stays on the target: names it and another of its memories
        return 'Nikolai Abilov wrote "Kazakhstan Echoes" in Astana, with "Unseen Rainbows" after it.'
    if "Unseen Rainbows" in prompt:
        return 'Nikolai Abilov wrote "Unseen Rainbows" in Astana and won the Tolstoy Literary Award.'
    # drifts: echoes the name, then talks about someone else's memories
    return "Nikolai Abilov is related to Paris, where Jean Dupont lives in Lyon."


def _mine(adaptive: bool):
    from lethe.mining.graph import mine_graph

    model = ScriptedModel(_reply)
    graph, responses, stats = mine_graph(model, ANCHOR, _elicit_params(), ScoreParams(tau=0.3, min_recognition=0.3),
                                         _expand_params(adaptive))
    return model, graph, stats


def test_grounded_share_needs_the_anchor_and_one_of_its_memories():
    from lethe.mining.graph import grounded_share
    from lethe.mining.score import anchor_aliases, mentions_by_response

    aliases = anchor_aliases(ANCHOR)
    responses = [Response("a", "q", "Nikolai Abilov grew up in Astana.", 1),
                 Response("b", "q", "Nikolai Abilov likes Paris.", 1),
                 Response("c", "q", "Astana is a city.", 1),
                 Response("d", "q", "Abilov was born in Astana.", 1)]
    mentions = mentions_by_response(responses, aliases)
    assert grounded_share(responses, mentions, aliases, {"astana"}) == pytest.approx(2 / 4)
    assert grounded_share([], mentions, aliases, {"astana"}) == 0.0


def test_adaptive_stop_keeps_drifted_memories_but_does_not_expand_them():
    with_stop, graph, stats = _mine(adaptive=True)
    without_stop, full_graph, full_stats = _mine(adaptive=False)
    # Astana drifted (back share 0): its memories are kept, but nothing found from it is expanded
    assert graph.edges["Astana", ANCHOR]["strength"] == 0.0
    assert graph.edges["Kazakhstan Echoes", ANCHOR]["strength"] == 1.0
    assert "Paris" in graph and graph.nodes["Paris"]["hop"] == 2
    assert not any("Paris" in p for p in with_stop.prompts)
    assert any("Paris" in p for p in without_stop.prompts)
    assert stats.model_calls < full_stats.model_calls
    # what the target's own memories led to is found either way
    assert "Tolstoy Literary Award" in graph and "Tolstoy Literary Award" in full_graph


def test_adaptive_stop_ends_expansion_when_a_hop_drifts():
    from lethe.mining.graph import mine_graph

    def drifting(prompt: str) -> str:
        if prompt.startswith("Tell me about"):
            return "Nikolai Abilov was born in Astana, Kazakhstan."
        return "Nikolai Abilov and Paris and Berlin and Rome."

    _, _, stats = mine_graph(ScriptedModel(drifting), ANCHOR, _elicit_params(),
                             ScoreParams(tau=0.3, min_recognition=0.3), _expand_params(True))
    assert stats.stopped_by == "adaptive" and stats.hops_done == 1 and stats.back_strength == [0.0]


def test_expansion_uses_the_templates_of_the_node_kind():
    from lethe.mining.graph import mine_graph

    model = ScriptedModel(_reply)
    params = _expand_params(False, hops=1, prompts_by_kind={"title": ['What is "{node}" by {anchor} about?']})
    mine_graph(model, ANCHOR, _elicit_params(), ScoreParams(tau=0.3, min_recognition=0.3), params)
    assert 'What is "Kazakhstan Echoes" by Nikolai Abilov about?' in model.prompts
    assert "How is Astana related to Nikolai Abilov?" in model.prompts
    assert "How is Kazakhstan Echoes related to Nikolai Abilov?" not in model.prompts


def test_expansion_templates_must_name_anchor_and_node():
    with pytest.raises(ValueError, match="must contain"):
        _expand_params(True, prompts_by_kind={"title": ["What is {node} about?"]})


def test_graph_picture_leaves_extraction_noise_out(tmp_path):
    from lethe.mining.graph import draw_graph, is_noise

    graph = nx.DiGraph(anchor="Ada Vale")
    graph.add_node("Ada Vale", key="::anchor", kind="anchor", strength=1.0, hop=0)
    graph.add_node("Lisbon", key="lisbon", kind="entity", strength=0.9, hop=1)
    graph.add_node("and", key="and", kind="concept", strength=0.4, hop=1)
    graph.add_edge("Ada Vale", "Lisbon", weight=0.7, strength=0.9, count=9)
    graph.add_edge("Ada Vale", "and", weight=0.3, strength=0.4, count=4)
    assert is_noise("and", graph.nodes["and"]) and not is_noise("Lisbon", graph.nodes["Lisbon"])
    draw_graph(graph, tmp_path / "graph.png")
    assert (tmp_path / "graph.png").stat().st_size > 10_000
