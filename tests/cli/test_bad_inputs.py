"""The bad-input suite: every case ends in one clear line (and `{"error": ...}` on stdout with --json),
exit code 2, no traceback, and nothing started or written. Counted in the closing note of issue 16.

Run in-process (typer's CliRunner) so that 30-odd cases cost seconds; test_cli_errors.py runs the
same contract as real subprocesses.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from lethe.cli import app
from lethe.config import DEFAULT_PARAMS, METHOD_NAMES

ANCHOR = "Basil Mahfouz Al-Kuwaiti"


def _params(tmp_path: Path, edit=None, text: str | None = None) -> str:
    path = tmp_path / "params.yaml"
    if text is not None:
        path.write_text(text)
        return str(path)
    raw = yaml.safe_load(DEFAULT_PARAMS.read_text())
    raw["registry"].update(queue_url=f"sqlite:///{tmp_path / 'queue.db'}", workdir=str(tmp_path / "requests"))
    raw["stack"]["state_dir"] = str(tmp_path / "stack")
    if edit:
        edit(raw)
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def _set(section: str, key: str, value):
    def edit(raw):
        node = raw
        for part in section.split("."):
            node = node[part]
        node[key] = value
    return edit


def _config_only_model(tmp_path: Path) -> str:
    folder = tmp_path / "half-model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    return str(folder)


def _model_copy(tmp_path: Path, model: str, name: str) -> Path:
    import shutil

    return Path(shutil.copytree(model, tmp_path / name))


def _unknown_architecture_model(tmp_path: Path, model: str) -> str:
    folder = _model_copy(tmp_path, model, "strange-model")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "zorblax"}))
    return str(folder)


def _tokenizer_without_pad_or_eos(tmp_path: Path, model: str) -> str:
    from transformers import AutoTokenizer

    folder = _model_copy(tmp_path, model, "tokenless-model")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.pad_token = None
    tokenizer.eos_token = None
    tokenizer.save_pretrained(folder)
    return str(folder)


def _forget_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "forget_set.jsonl"
    path.write_text(text)
    return str(path)


# (case id, argv builder(tmp_path, model) -> list, expected fragment of the one error line)
CASES = [
    ("empty anchor", lambda t, m: ["forget", "", "--model", m], "anchor is empty"),
    ("blank anchor", lambda t, m: ["forget", "   ", "--model", m], "anchor is empty"),
    ("punctuation anchor", lambda t, m: ["forget", "?!...", "--model", m], "has no letters"),
    ("digits anchor", lambda t, m: ["forget", "12345", "--model", m], "has no letters"),
    ("huge anchor", lambda t, m: ["forget", "Basil " * 100, "--model", m], "a name is at most"),
    ("path-like anchor", lambda t, m: ["forget", "../../etc/passwd", "--model", m], "looks like a path"),
    ("control characters", lambda t, m: ["forget", "Basil\x00Mahfouz", "--model", m], "control characters"),
    ("escape sequence", lambda t, m: ["request", "add", "Basil\x1b[2J", "--requester", "a", "--reason", "b",
                                      "--model", m], "control characters"),
    ("long description", lambda t, m: ["forget", ANCHOR, "--description", "x" * 900, "--model", m],
     "longer than one sentence"),
    ("blank requester", lambda t, m: ["request", "add", ANCHOR, "--requester", " ", "--reason", "b", "--model", m],
     "requester and a reason"),
    ("missing model", lambda t, m: ["forget", ANCHOR, "--model", str(t / "nope")], "no model at"),
    ("model without weights", lambda t, m: ["forget", ANCHOR, "--model", _config_only_model(t)], "no weights"),
    ("unknown architecture", lambda t, m: ["forget", ANCHOR, "--model", _unknown_architecture_model(t, m)],
     "is a 'zorblax' model, an architecture transformers"),
    ("tokenizer without pad or eos", lambda t, m: ["unlearn", "--model", _tokenizer_without_pad_or_eos(t, m),
                                                   "--forget-set", _forget_file(t, '{"question": "q", "answer": '
                                                   '"a"}\n'), "--allow-unvalidated"],
     "neither a pad nor an end-of-sequence token"),
    ("ask a missing model", lambda t, m: ["ask", "Who?", "--model", str(t / "nope")], "no model at"),
    ("unknown world size", lambda t, m: ["world", "build", "--size", "huge"], "unknown world size"),
    ("unknown source", lambda t, m: ["mine", ANCHOR, "--source", "wiki", "--model", m], "unknown source"),
    ("unknown step", lambda t, m: ["step", "dream", "--anchor", ANCHOR, "--model", m, "--workdir", str(t / "w")],
     "unknown step"),
    ("unknown method", lambda t, m: ["unlearn", "--model", m, "--forget-set", _forget_file(t, '{"question": "q", '
                                     '"answer": "a"}\n'), "--method", "magic", "--allow-unvalidated"],
     "unknown unlearning method"),
    ("missing forget set", lambda t, m: ["unlearn", "--model", m, "--forget-set", str(t / "none.jsonl"),
                                         "--allow-unvalidated"], "forget set not found"),
    ("broken forget set", lambda t, m: ["unlearn", "--model", m, "--forget-set", _forget_file(t, "{not json\n"),
                                        "--allow-unvalidated"], "line 1 is not a {question, answer}"),
    ("unvalidated forget set", lambda t, m: ["unlearn", "--model", m, "--forget-set",
                                             _forget_file(t, '{"question": "q", "answer": "a"}\n')],
     "no validation report"),
    ("adapter folder without adapter", lambda t, m: ["evaluate", "--model", m, "--adapter", str(t)],
     "no LoRA adapter"),
    ("unknown request", lambda t, m: ["request", "show", "req-nope"], "no request"),
    ("unknown status", lambda t, m: ["request", "list", "--status", "weird"], "unknown status"),
    ("cancel unknown request", lambda t, m: ["request", "cancel", "req-nope"], "no request"),
    ("empty memory query", lambda t, m: ["memory", "search", "  ", "--memory", str(t / "m.db")], "query is empty"),
]
PARAM_CASES = [
    ("params file missing", None, "params file not found"),
    ("params not YAML", "world: [unclosed", "not valid YAML"),
    ("params not a mapping", "- a\n- b\n", "must be a mapping"),
    ("wrong type", _set("world", "seed", "abc"), "world.seed"),
    ("unknown key", _set("unlearn", "lerning_rate", 0.1), "unlearn.lerning_rate: unknown key"),
    ("unknown method in params", _set("unlearn", "method", "npoo"), "unknown unlearning method 'npoo'"),
    ("audit share 0", _set("audit", "heldout_share", 0.0), "audit.heldout_share"),
    ("audit share 1", _set("audit", "heldout_share", 1.0), "audit.heldout_share"),
    ("negative steps", _set("unlearn", "max_steps", -5), "unlearn.max_steps"),
    ("unknown retain pool", _set("unlearn", "general_retain_authors", "everyone"), "unlearn.general_retain_authors"),
    ("non-loopback stack", _set("stack", "host", "0.0.0.0"), "not a loopback address"),
    ("unknown prompt field", lambda raw: raw["elicit"]["prompts"].append("Tell me about {foo}."),
     "unknown field(s) {foo}"),
    ("expansion prompt without node", lambda raw: raw["expand"]["prompts"].append("About {anchor}?"),
     "must contain {node}"),
    ("bad author range", _set("world.sizes.tiny", "authors", "5-x"), "world.sizes.tiny"),
]


@pytest.fixture(scope="module")
def runner():
    return CliRunner()


def _assert_one_clear_line(result, needle: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert json.loads(result.stdout) == {"error": lines[0].removeprefix("error: ")}


@pytest.mark.parametrize("case, argv, needle", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line(case, argv, needle, runner, tiny_world, tmp_path):
    params = _params(tmp_path)
    result = runner.invoke(app, [*argv(tmp_path, tiny_world["model_path"]), "--params", params, "--json"])
    _assert_one_clear_line(result, needle)
    assert not (tmp_path / "stack").exists()  # no server was started for a bad input


@pytest.mark.parametrize("case, edit, needle", PARAM_CASES, ids=[c[0] for c in PARAM_CASES])
def test_bad_params_are_one_clear_line(case, edit, needle, runner, tmp_path):
    if edit is None:
        path = str(tmp_path / "missing.yaml")
    elif isinstance(edit, str):
        path = _params(tmp_path, text=edit)
    else:
        path = _params(tmp_path, edit)
    result = runner.invoke(app, ["request", "list", "--params", path, "--json"])
    _assert_one_clear_line(result, needle)


def test_a_model_too_large_for_the_memory_is_refused_before_anything_is_queued(runner, tiny_world, tmp_path):
    params = _params(tmp_path, _set("backend", "max_memory_gb", 1e-6))
    result = runner.invoke(app, ["forget", ANCHOR, "--model", tiny_world["model_path"], "--params", params, "--json"])
    _assert_one_clear_line(result, "more than 80% of the 0.00 GiB available")
    assert not (tmp_path / "stack").exists() and not (tmp_path / "queue.db").exists()


def test_the_suite_counts_at_least_25_bad_inputs():
    assert len(CASES) + len(PARAM_CASES) >= 25


def test_params_method_names_match_the_registry():
    from lethe.unlearn.methods import REGISTRY

    assert sorted(REGISTRY) == sorted(METHOD_NAMES)
