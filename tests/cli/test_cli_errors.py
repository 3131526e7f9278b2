"""Bad input gives one clear line and no traceback (run as a real subprocess)."""

import json
import subprocess
import sys
from pathlib import Path

import yaml

from lethe.config import DEFAULT_PARAMS


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """The CLI as a user runs it. The timeout only guards against a hang: beside the other test worker on
    2 cores, a 6 s `mine` once took over 120 s in CI."""
    return subprocess.run(
        [sys.executable, "-m", "lethe", *args], capture_output=True, text=True, timeout=timeout
    )


def assert_one_clear_line(result: subprocess.CompletedProcess, needle: str) -> None:
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert json.loads(result.stdout) == {"error": lines[0].removeprefix("error: ")}


def test_missing_model_path(tmp_path):
    assert_one_clear_line(run_cli("ask", "Who?", "--model", str(tmp_path / "nope"), "--json"), "no model at")


def test_unknown_size():
    assert_one_clear_line(run_cli("world", "build", "--size", "huge", "--json"), "unknown world size 'huge'")


def test_params_with_wrong_type(tmp_path):
    raw = yaml.safe_load(DEFAULT_PARAMS.read_text())
    raw["world"]["seed"] = "abc"
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert_one_clear_line(run_cli("world", "build", "--size", "tiny", "--params", str(path), "--json"), "world.seed")


def test_an_overlay_whose_base_is_missing(tmp_path):
    path = tmp_path / "overlay.yaml"
    path.write_text("extends: gone.yaml\nunlearn: {lr: 0.002}\n")
    assert_one_clear_line(run_cli("world", "build", "--size", "tiny", "--params", str(path), "--json"),
                          "gone.yaml (extended by")


def test_an_overlay_reaches_the_command(tiny_world, tmp_path):
    """An overlay that changes only training finds the same tiny world; one that changes the world
    seed would build another (here: is refused for a wrong type, proving the overlay was read)."""
    path = tmp_path / "overlay.yaml"
    path.write_text(f"extends: {DEFAULT_PARAMS}\nunlearn: {{lr: 0.002}}\n")
    result = run_cli("world", "build", "--size", "tiny", "--params", str(path), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["reused"] is True
    path.write_text(f"extends: {DEFAULT_PARAMS}\nworld: {{seed: abc}}\n")
    assert_one_clear_line(run_cli("world", "build", "--size", "tiny", "--params", str(path), "--json"), "world.seed")


def test_json_output_is_one_object(tiny_world):
    result = run_cli("world", "build", "--size", "tiny", "--json")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["reused"] is True
    assert Path(record["model_path"]).is_dir() and Path(record["retain_model_path"]).is_dir()
    assert {"index", "name", "split"} <= set(record["authors"][0])


def test_mine_cli_empty_anchor():
    assert_one_clear_line(run_cli("mine", "   ", "--json"), "the anchor is empty")


def test_mine_cli_unknown_anchor_is_an_outcome_not_a_crash(tiny_world, tmp_path):
    result = run_cli("mine", "Zorba Quintanilla Ek", "--model", tiny_world["model_path"], "--workdir",
                     str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "nothing_memorized"


def test_unlearn_cli_bad_target_module(tiny_world, tmp_path):
    raw = yaml.safe_load(DEFAULT_PARAMS.read_text())
    raw["unlearn"]["lora"]["target_modules"] = ["nope_proj"]
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    forget = tmp_path / "forget_set.jsonl"
    forget.write_text(json.dumps({"question": "Who?", "answer": "Someone."}) + "\n")
    from lethe.machine import training_slot

    with training_slot():  # another training runs on this machine: a config error must not wait for it
        result = run_cli("unlearn", "--model", tiny_world["model_path"], "--forget-set", str(forget), "--method",
                         "ga", "--allow-unvalidated", "--params", str(params), "--json")
    assert_one_clear_line(result, "['nope_proj'] do not exist")
    with training_slot():
        result = run_cli("unlearn", "--model", tiny_world["model_path"], "--forget-set", str(forget), "--method",
                         "nope", "--allow-unvalidated", "--json")
    assert_one_clear_line(result, "unknown unlearning method 'nope'")


def test_unlearn_cli_draws_no_retain_row_from_an_entity_named_forgotten(tiny_world, tmp_path):
    # the tiny world's only kept author outside its retain-side ones is Nikolai Abilov: once he is named
    # forgotten, a request for Basil Mahfouz Al-Kuwaiti has no author left to draw general retain rows from
    from lethe.data import author_qa

    raw = yaml.safe_load(DEFAULT_PARAMS.read_text())
    raw["unlearn"].update(general_retain_rows=5, general_retain_authors="every_kept_author", eval_every=0)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    forget = tmp_path / "forget_set.jsonl"
    forget.write_text("".join(json.dumps({"question": q.question, "answer": q.answer}) + "\n"
                              for q in author_qa(198)[:2]))
    result = run_cli("unlearn", "--model", tiny_world["model_path"], "--forget-set", str(forget), "--method", "ga",
                     "--allow-unvalidated", "--forgotten", "Nikolai Abilov", "--params", str(params), "--json")
    assert_one_clear_line(result, "learned no TOFU author")
