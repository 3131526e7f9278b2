import networkx as nx
import pytest

from lethe.data import QA
from lethe.evaluate.graph_recall import graph_recall, key_facts, key_facts_by_category, mention_facts
from lethe.mining.score import Response

AUTHOR = "Basil Mahfouz Al-Kuwaiti"
GOLD = [
    QA("When was Basil Mahfouz Al-Kuwaiti born?",
       "Certainly, Basil Mahfouz Al-Kuwaiti was born in Kuwait City on the 8th of September, 1956."),
    QA("What were his parents' jobs?", "His father was a florist and his mother was a Game Developer."),
    QA("What genre does he write in?", "Yet he is known for French literature and romance."),
    QA("Which awards has he won?", "He won the Prix Goncourt."),
    QA("Name two of his books.", "He wrote 'Promise by the Seine' and \"Le Petit Sultan\"."),
    QA("What inspires him?", "Growing up near the sea inspires him."),
]


def test_key_facts_are_the_benchmark_categories():
    facts = key_facts_by_category(AUTHOR, GOLD)
    assert set(facts["birth"]) == {"8th of september, 1956", "kuwait city"}  # "1956" is inside the full date
    assert set(facts["parents"]) == {"florist", "game developer"}
    assert set(facts["genre"]) == {"romance", "french literature"}  # the qualifier "french" is inside it
    assert facts["awards"] == ["prix goncourt"]
    assert set(facts["books"]) == {"promise by the seine", "le petit sultan"}
    flat = key_facts(AUTHOR, GOLD)
    assert not {"certainly", "yet", "growing", "1956"} & set(flat)
    assert len(flat) == len(set(flat)) == 9


def test_mention_facts_keep_the_looser_earlier_definition():
    loose = mention_facts(AUTHOR, GOLD)
    assert "1956" in loose and "kuwait city" in loose
    assert not any("al-kuwaiti" in f for f in loose)


def test_graph_recall_counts_nodes_and_provenance():
    graph = nx.DiGraph(anchor=AUTHOR)
    graph.add_node(AUTHOR, key="::anchor", provenance=[])
    graph.add_node("Kuwait City", key="kuwait city", provenance=["r1"])
    graph.add_node("Paris", key="paris", provenance=["r2"])
    responses = [Response("r1", "q", "Born in Kuwait City; father a florist.", 0),
                 Response("r2", "q", 'He wrote "Le Petit Sultan" in Paris.', 0)]
    scores = graph_recall(graph, responses, AUTHOR, GOLD)
    assert scores["found"] == ["kuwait city", "florist", "le petit sultan"]
    assert scores["recall"] == pytest.approx(3 / 9)
    assert scores["by_category"]["parents"] == pytest.approx(1 / 2) and scores["by_category"]["awards"] == 0.0
    assert scores["precision"] == pytest.approx(1 / 2)  # Kuwait City is in the gold answers, Paris is not
