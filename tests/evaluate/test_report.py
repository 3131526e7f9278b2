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
