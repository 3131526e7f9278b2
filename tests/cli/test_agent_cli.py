"""The memory commands with --memory need no target model (a machine without the default world)."""

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from lethe.agent.memory import MemoryStore
from lethe.cli import app


def _params_without_worlds(tmp_path) -> Path:
    raw = yaml.safe_load(Path("params.yaml").read_text())
    raw["world"]["output_dir"] = str(tmp_path / "no-worlds-here")
    raw["registry"]["dvc_store"] = str(tmp_path / "dvc-store")
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    return params


def test_memory_search_with_an_explicit_memory_needs_no_world(tmp_path):
    params = _params_without_worlds(tmp_path)
    memory = tmp_path / "memory.db"
    with MemoryStore(memory) as store:
        store.add("record", "Jaime Vasquez writes true crime.", guard=False)
    result = CliRunner().invoke(app, ["memory", "search", "Who writes true crime?", "--memory", str(memory),
                                      "--params", str(params), "--json"])
    assert result.exit_code == 0, result.output
    assert [h["text"] for h in json.loads(result.stdout)["hits"]] == ["Jaime Vasquez writes true crime."]
    without = CliRunner().invoke(app, ["memory", "search", "x", "--params", str(params), "--json"])
    assert without.exit_code == 2 and "not built yet" in json.loads(without.stdout)["error"]


def test_memory_restore_with_an_explicit_memory_needs_no_world(tmp_path, monkeypatch):
    params = _params_without_worlds(tmp_path)
    monkeypatch.setenv("LETHE_TRACKING_URI", "http://127.0.0.1:9")  # configured services: no local stack
    result = CliRunner().invoke(app, ["memory", "restore", "agentic-nope", "--memory", str(tmp_path / "m.db"),
                                      "--params", str(params), "--json"])
    error = json.loads(result.stdout)["error"]
    assert result.exit_code == 2 and "not built yet" not in error and "agentic-nope" in error
