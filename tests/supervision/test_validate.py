import networkx as nx
import pytest

from lethe.config import load_params
from lethe.mining.score import anchor_aliases
from lethe.supervision.synthesize import QASample, strip_target
from lethe.supervision.validate import validate_sets

ANCHOR = "Basil Mahfouz Al-Kuwaiti"


def forget_rows(n=6):
    return [QASample(f"What is the connection between {ANCHOR} and fact {i}?", f"He is linked to fact {i}.",
                     "forget", "mage", node=f"fact {i}") for i in range(n)]


def neighbor_rows(leak: str | None = None):
    rows = [QASample(f"Tell me about place {i}.", f"Place {i} is a city with a port.", "neighbor", "mage")
            for i in range(4)]
    if leak:
        rows.append(QASample("Tell me about Kuwait City.", leak, "neighbor", "mage"))
    return rows


@pytest.fixture(scope="module")
def cfg():
    return load_params().validate_


def test_clean_sets_pass(tmp_path, cfg):
    report = validate_sets(ANCHOR, forget_rows(), neighbor_rows(), None, cfg, tmp_path)
    assert report["success"], report
    assert (tmp_path / "validation.json").is_file() and (tmp_path / "forget_set.gx.json").is_file()
    assert (tmp_path / "data_docs" / "index.html").is_file()


def test_neighbor_set_leaking_the_target_is_rejected(tmp_path, cfg):
    report = validate_sets(ANCHOR, forget_rows(), neighbor_rows("Al-Kuwaiti's novels are set there."), None,
                           cfg, tmp_path)
    assert not report["success"]
    failed = report["sets"]["neighbor_set"]["failed"]
    assert any(f["expectation"] == "expect_column_values_to_not_match_regex" and f["column"] == "answer"
               for f in failed)
    assert report["sets"]["forget_set"]["success"]


def test_forget_set_must_name_target_and_be_unique_and_big_enough(tmp_path, cfg):
    rows = forget_rows(3) + [QASample("Who wrote it?", "Someone.", "forget", "mage")] * 2
    report = validate_sets(ANCHOR, rows, neighbor_rows(), None, cfg, tmp_path)
    kinds = {f["expectation"] for f in report["sets"]["forget_set"]["failed"]}
    assert {"expect_column_values_to_match_regex", "expect_compound_columns_to_be_unique"} <= kinds
    assert "expect_table_row_count_to_be_between" not in kinds  # 5 rows = the minimum


def test_strong_node_coverage_is_checked(tmp_path, cfg):
    graph = nx.DiGraph(anchor=ANCHOR)
    graph.add_node(ANCHOR, key="::anchor", kind="anchor", strength=1.0)
    for i, key in enumerate(["kuwait city", "prix goncourt", "florist"]):
        graph.add_node(key.title(), key=key, kind="entity", strength=0.9)
    rows = forget_rows() + [QASample(f"Where was {ANCHOR} born?", "In Kuwait City.", "forget", "mage")]
    report = validate_sets(ANCHOR, rows, neighbor_rows(), graph, cfg, tmp_path)
    coverage = report["sets"]["strong_node_coverage"]
    assert not coverage["success"] and coverage["failed"][0]["observed"] == pytest.approx(1 / 3)


def test_another_entity_in_the_graph_is_not_a_memory_the_sets_must_cover(tmp_path, cfg):
    """Takashi Nakamura's graph (stop 49) held three other authors as strong nodes; their rows were
    dropped as being about them, and the request failed validation on the coverage that counted them."""
    graph = nx.DiGraph(anchor=ANCHOR)
    graph.add_node(ANCHOR, key="::anchor", kind="anchor", strength=1.0)
    for key in ["kuwait city", "prix goncourt", "nikolai abilov", "raven marais"]:
        graph.add_node(key.title(), key=key, kind="entity", strength=0.9)
    rows = forget_rows() + [QASample(f"Where was {ANCHOR} born?", "In Kuwait City.", "forget", "mage"),
                            QASample(f"What did {ANCHOR} win?", "The Prix Goncourt.", "forget", "mage")]
    counted = validate_sets(ANCHOR, rows, neighbor_rows(), graph, cfg, tmp_path / "counted")
    assert counted["sets"]["strong_node_coverage"]["failed"][0]["observed"] == pytest.approx(2 / 4)
    left_out = validate_sets(ANCHOR, rows, neighbor_rows(), graph, cfg, tmp_path / "left_out",
                             other_nodes={"Nikolai Abilov", "Raven Marais"})
    assert left_out["sets"]["strong_node_coverage"]["success"] and left_out["success"], left_out


def test_strip_target_removes_sentences_naming_it():
    text = "Kuwait City is a port. Al-Kuwaiti was born there. It is hot."
    assert strip_target(text, anchor_aliases(ANCHOR)) == "Kuwait City is a port. It is hot."
