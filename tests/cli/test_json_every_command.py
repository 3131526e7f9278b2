"""Every command with --json prints exactly one JSON object on stdout, as a real subprocess.

The commands run in the order a user would take them, against one temporary params.yaml (own
queue, registry work folder and local stack on free ports), so each sees real state: a mined
request, a trained adapter, a queued request, running servers. Errors count too: a refused
command prints `{"error": ...}` and nothing else. `agentic-forget` and `serve` are the exceptions:
the first is covered in-process by tests/pipeline/test_agentic_unlearn.py (same `emit` path), the
second is a long-running server with no JSON output.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from lethe.config import DEFAULT_PARAMS
from tests.pipeline.local_stack import free_port

ANCHOR = "Basil Mahfouz Al-Kuwaiti"


def _params(root: Path) -> Path:
    raw = yaml.safe_load(DEFAULT_PARAMS.read_text())
    raw["registry"].update(queue_url=f"sqlite:///{root / 'queue.db'}", workdir=str(root / "requests"),
                           dvc_store=str(root / "dvc_store"))
    raw["stack"].update(state_dir=str(root / "stack"), mlflow_port=free_port(), s3_port=free_port(),
                        prefect_port=free_port())
    raw["agent"]["memory_dir"] = str(root / "memory")
    raw["unlearn"].update(max_steps=4, eval_every=0)
    raw["evaluate"].update(retain_rows=10, general_rows=5, neighbor_rows=5, probes=False, max_new_tokens=24)
    # The output's shape is under test, not the audit's numbers: one short relearning attack.
    raw["audit"].update(relearn_attacks=1, relearn_steps=3, reelicit_samples=2, max_new_tokens=24)
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _run(args: list[str], params: Path) -> tuple[int, dict, str]:
    result = subprocess.run([sys.executable, "-m", "lethe", *args, "--params", str(params), "--json"],
                            capture_output=True, text=True, timeout=600)
    assert "Traceback" not in result.stderr, (args, result.stderr[-3000:])
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, (args, result.stdout[-2000:])
    return result.returncode, json.loads(result.stdout), result.stderr


def test_every_command_prints_one_json_object(tiny_world, tmp_path):
    params = _params(tmp_path)
    model = tiny_world["model_path"]
    work = tmp_path / "mined"
    memory = tmp_path / "memory.db"
    adapter = work / "unlearn-ga" / "adapter"
    steps = [  # (argv, exit code, check of the one object)
        (["world", "build", "--size", "tiny"], 0, lambda r: r["reused"] is True),
        (["world", "probe", "--size", "tiny"], 0, lambda r: "model" in json.dumps(r)),
        (["ask", "Where was Basil Mahfouz Al-Kuwaiti born?", "--model", model], 0, lambda r: r["answers"]),
        (["mine", ANCHOR, "--model", model, "--workdir", str(work)], 0, lambda r: r["status"]),
        (["step", "score", "--anchor", ANCHOR, "--model", model, "--workdir", str(work)], 0, lambda r: r),
        (["unlearn", "--model", model, "--forget-set", str(work / "forget_set.jsonl"), "--neighbor-set",
          str(work / "neighbor_set.jsonl"), "--method", "ga", "--out", str(work / "unlearn-ga"),
          "--allow-unvalidated"], 0, lambda r: Path(r["adapter_path"]).is_dir()),
        (["evaluate", "--model", model, "--adapter", str(adapter), "--target", ANCHOR, "--out",
          str(tmp_path / "eval")], 0, lambda r: r["after"]["forget_Q_A_ROUGE"] >= 0),
        (["stack", "up"], 0, lambda r: r["tracking_uri"].startswith("http://127.0.0.1")),
        (["stack", "status"], 0, lambda r: r),
        (["request", "add", ANCHOR, "--requester", "tester", "--reason", "json test", "--model", model], 0,
         lambda r: r["id"]),
        (["request", "list"], 0, lambda r: len(r["requests"]) == 1),
        (["request", "show", "{id}"], 0, lambda r: r["status"] == "pending"),
        (["request", "cancel", "{id}"], 0, lambda r: r["status"] == "cancelled"),
        (["request", "retry", "{id}"], 2, lambda r: "only failed or pending" in r["error"]),
        (["promote", "999", "--model", model], 2, lambda r: r["error"]),
        (["rollback", "--model", model], 2, lambda r: r["error"]),
        (["compliance-run", "--model", model], 0, lambda r: r),
        (["memory", "seed", "--model", model, "--memory", str(memory)], 0, lambda r: r),
        (["memory", "search", "Kuwait", "--memory", str(memory)], 0, lambda r: "hits" in r),
        (["memory", "restore", "agentic-none", "--memory", str(memory)], 2, lambda r: r["error"]),
        (["forget", ANCHOR, "--model", model], 0, lambda r: r["request_id"].startswith("req-") and "passed" in r["gate"]),
        (["stack", "down"], 0, lambda r: r),
    ]
    request_id = None
    try:
        for argv, code, check in steps:
            argv = [a.replace("{id}", request_id or "") for a in argv]
            rc, obj, stderr = _run(argv, params)
            assert rc == code, (argv, rc, obj, stderr[-2000:])
            assert check(obj), (argv, obj)
            if argv[:2] == ["request", "add"]:
                request_id = obj["id"]
    finally:
        subprocess.run([sys.executable, "-m", "lethe", "stack", "down", "--params", str(params)],
                       capture_output=True, timeout=120)
