import json

from lethe.evaluate.report import markdown_table, write_report


def test_report_files(tmp_path):
    before = {"forget_Q_A_ROUGE": 1.0, "model_utility": 0.9, "neighbor_rouge": 0.95, "probe_role_play_rouge": 0.4,
              "_forget_truth_ratios": [0.1]}
    after = {"forget_Q_A_ROUGE": 0.25, "model_utility": 0.9, "neighbor_rouge": 0.9, "probe_role_play_rouge": 0.1}
    paths = write_report(tmp_path, before, after, {"targets": ["X"]})
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["before"]["forget_Q_A_ROUGE"] == 1.0 and "_forget_truth_ratios" not in saved["before"]
    assert "| forget_Q_A_ROUGE | 1 | 0.25 | 0.25 |" in (tmp_path / "report.md").read_text()
    assert len(paths["plots"]) == 2 and all((tmp_path / p.split("/")[-1]).stat().st_size > 1000 for p in paths["plots"])


def test_single_model_table():
    assert "| model_utility | 0.9 |" in markdown_table({"model_utility": 0.9})


def test_the_report_lists_each_held_out_probe_with_its_attacked_answers(tmp_path):
    rows = [{"node": "Prix Goncourt", "question": "Which prize | award?", "expected": "The Prix Goncourt " * 10,
             "after": "none", "after_attacked": "French literature", "reference_attacked": "San Francisco",
             "after_attacked_rouge": 0.25, "reference_attacked_rouge": 0.1, "after_attacked_novel": None,
             "reference_attacked_novel": 0.0}]
    write_report(tmp_path, {"forget_Q_A_ROUGE": 1.0}, {"forget_Q_A_ROUGE": 0.25}, {"heldout_probes": rows})
    text = (tmp_path / "report.md").read_text()
    line = next(line for line in text.splitlines() if line.startswith("| Prix Goncourt"))
    assert "Which prize / award?" in line and "…" in line  # no broken table, long text cut
    assert "| 0.25 / 0.10 | n/a / 0.00 |" in line
    write_report(tmp_path, {"forget_Q_A_ROUGE": 1.0}, {"forget_Q_A_ROUGE": 0.25})
    assert "Held-out probes" not in (tmp_path / "report.md").read_text()
