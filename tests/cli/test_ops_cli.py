"""`lethe forget`, `lethe request`, `lethe promote`, `lethe stack` from the command line (subprocesses)."""

import json
from pathlib import Path

import yaml

from lethe.config import DEFAULT_PARAMS
from tests.cli.test_cli_errors import assert_one_clear_line, run_cli


def _params(tmp_path: Path) -> Path:
    raw = yaml.safe_load(DEFAULT_PARAMS.read_text())
    raw["registry"]["queue_url"] = f"sqlite:///{tmp_path / 'queue.db'}"
    raw["stack"]["state_dir"] = str(tmp_path / "stack")
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_forget_rejects_bad_anchors_before_starting_anything(tiny_world, tmp_path):
    params = _params(tmp_path)
    for anchor, needle in (("   ", "the anchor is empty"), ("?!...", "has no letters")):
        result = run_cli("forget", anchor, "--model", tiny_world["model_path"], "--params", str(params), "--json")
        assert_one_clear_line(result, needle)
    assert not (tmp_path / "stack").exists() and not (tmp_path / "queue.db").exists()


def test_forget_with_a_missing_model(tmp_path):
    result = run_cli("forget", "Basil Mahfouz Al-Kuwaiti", "--model", str(tmp_path / "nope"), "--json")
    assert_one_clear_line(result, "no model at")


def test_request_add_list_show(tiny_world, tmp_path):
    params = str(_params(tmp_path))
    added = run_cli("request", "add", "Basil Mahfouz Al-Kuwaiti", "--requester", "dpo@example.org",
                    "--reason", "GDPR art. 17", "--model", tiny_world["model_path"], "--params", params, "--json")
    record = json.loads(added.stdout)
    assert added.returncode == 0 and record["status"] == "pending" and record["created"]
    again = json.loads(run_cli("request", "add", "basil mahfouz al-kuwaiti", "--requester", "x", "--reason", "y",
                               "--model", tiny_world["model_path"], "--params", params, "--json").stdout)
    assert again["id"] == record["id"] and not again["created"]
    listed = json.loads(run_cli("request", "list", "--status", "pending", "--params", params, "--json").stdout)
    assert [r["id"] for r in listed["requests"]] == [record["id"]]
    shown = json.loads(run_cli("request", "show", record["id"], "--params", params, "--json").stdout)
    assert [e["event"] for e in shown["audit"]] == ["submitted", "duplicate_submission"]
    assert_one_clear_line(run_cli("request", "show", "req-nope", "--params", params, "--json"), "no request")
    assert_one_clear_line(run_cli("request", "list", "--status", "weird", "--params", params, "--json"),
                          "unknown status")


def test_request_add_agentic(tiny_world, tmp_path):
    """An agentic request is queued beside a weights request for the same anchor, naming the agent's
    memory (the model's own by default); --memory without --agentic is refused."""
    params, model = str(_params(tmp_path)), tiny_world["model_path"]
    common = ("--requester", "dpo@example.org", "--reason", "GDPR art. 17", "--model", model, "--params", params,
              "--json")
    weights = json.loads(run_cli("request", "add", "Nikolai Abilov", *common).stdout)
    agentic = json.loads(run_cli("request", "add", "Nikolai Abilov", "--agentic", *common).stdout)
    assert agentic["created"] and agentic["id"] != weights["id"]
    assert (weights["kind"], weights["memory"], agentic["kind"]) == ("unlearn", None, "agentic")
    assert Path(agentic["memory"]).is_absolute() and agentic["memory"].endswith("memory.db")
    own = json.loads(run_cli("request", "add", "Jaime Vasquez", "--agentic", "--memory", str(tmp_path / "a.db"),
                             *common).stdout)
    assert own["memory"] == str((tmp_path / "a.db").resolve())
    assert_one_clear_line(run_cli("request", "add", "Jaime Vasquez", "--memory", str(tmp_path / "a.db"), *common),
                          "goes with --agentic")


def test_stack_status_when_down(tmp_path):
    result = run_cli("stack", "status", "--params", str(_params(tmp_path)), "--json")
    assert result.returncode == 0 and json.loads(result.stdout) == {"running": False}
