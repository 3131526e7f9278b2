"""A batched request as a user runs it: two `lethe request add`, then `lethe compliance-run --batch`
against the stack's real MLflow and S3 servers (Prefect's test harness runs the flows), on the tiny
world. Both entities are mined, one adapter is trained on their merged supervision, one gate decides
with a forgetting row per entity, one model version forgets both; each request keeps its own run and
ledger events.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from lethe.config import DEFAULT_PARAMS, load_params
from lethe.ops import registry
from lethe.ops.environment import resolve
from lethe.ops.gate import entity_label
from lethe.ops.queue import COMPLETED, RequestQueue
from lethe.ops.stack import LocalStack
from tests.pipeline.local_stack import free_port, lethe_json, relax_for_pipeline_tests

FIRST, SECOND = "Basil Mahfouz Al-Kuwaiti", "Nikolai Abilov"  # the tiny world's forget01 authors


def _params(root: Path) -> Path:
    raw = yaml.safe_load(DEFAULT_PARAMS.read_text())
    raw["registry"].update(queue_url=f"sqlite:///{root / 'queue.db'}", workdir=str(root / "requests"),
                           dvc_store=str(root / "dvc-store"), compliance_dir=str(root / "compliance"),
                           retries=1, retry_delay_seconds=1.0)
    raw["stack"].update(state_dir=str(root / "stack"), mlflow_port=free_port(), s3_port=free_port(), prefect=False)
    raw["scale"].update(mine_ahead=False)  # the batch mines its members itself here
    relax_for_pipeline_tests(raw)
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _lethe(params: Path, *args: str) -> dict:
    return lethe_json(params, *args, timeout=1500)


@pytest.fixture(scope="module")
def batched(tmp_path_factory, prefect_harness, tiny_world):
    root = tmp_path_factory.mktemp("batch")
    params_path = _params(root)
    params = load_params(params_path)
    local = LocalStack(params.stack)
    env = resolve(params)  # starts SeaweedFS + MLflow
    model = tiny_world["model_path"]
    try:
        for anchor in (FIRST, SECOND):
            _lethe(params_path, "request", "add", anchor, "--requester", "tester", "--reason", "batch test",
                   "--model", model)
        result = _lethe(params_path, "compliance-run", "--batch", "--model", model)
        yield {"result": result, "env": env, "queue": RequestQueue(env.queue_url), "params": params, "model": model}
    finally:
        local.down()


def test_one_adapter_one_gate_one_version_forget_both(batched):
    result, queue = batched["result"], batched["queue"]
    assert result["batched"] is True
    rows = {row["anchor"]: row for row in result["processed"]}
    first, second = rows[FIRST], rows[SECOND]
    assert first["batch_id"] == second["batch_id"] and first["batch_request_ids"] == second["batch_request_ids"]
    assert first["model_version"] == second["model_version"] and first["adapter_path"] == second["adapter_path"]
    assert first["status"] == second["status"] == COMPLETED, first["gate"]["reasons"]
    assert {queue.get(first["request_id"]).status, queue.get(second["request_id"]).status} == {COMPLETED}

    checks = {c["name"]: c for c in first["gate"]["checks"]}
    for anchor in (FIRST, SECOND):  # forgetting is judged per entity, on its own held-out probes
        assert checks[f"heldout_forgetting - {entity_label(anchor)}"]["value"] is not None
        assert f"relearning - {entity_label(anchor)}" in checks
    assert "entity_retention" in checks and "utility" in checks

    client = registry.client(batched["env"].tracking_uri)
    version = client.get_model_version(first["model_name"], first["model_version"])
    assert json.loads(version.tags["lineage.forgotten_anchors"]) == [FIRST, SECOND]
    assert len(json.loads(version.tags["lineage.adapter_chain"])) == 1
    assert json.loads(version.tags["lineage.batch_request_ids"]) == [first["request_id"], second["request_id"]]
    assert version.tags["lineage.request_id"] == first["batch_id"]
    assert first["promoted"] and registry.alias_version(client, first["model_name"], "champion").version == \
        first["model_version"]
    for row in (first, second):  # each request keeps its own run, with its own entity's numbers
        run = client.get_run(row["mlflow_run_id"])
        assert run.data.tags["lethe.batch_id"] == first["batch_id"] and run.info.status == "FINISHED"
        assert "after.heldout_rouge" in run.data.metrics


def test_each_request_keeps_its_ledger_and_the_reaudit_covers_both(batched):
    result, queue = batched["result"], batched["queue"]
    version = result["processed"][0]["model_version"]
    for row in result["processed"]:
        events = {e["event"]: e for e in queue.audit_log(row["request_id"])}
        assert events["batch_formed"]["detail"]["batch_id"] == row["batch_id"]
        assert events["gate_decision"]["detail"]["model_version"] == version
        assert "dvc_pushed" in events and "alias_moved" in events
    entities = {e["anchor"]: e for e in result["audit"]["entities"]}
    assert set(entities) == {FIRST, SECOND} and all(e["in_champion_chain"] for e in entities.values())
    assert result["audit"]["champion"] == version
    report = Path(result["report_path"]).read_text()
    assert report.count(result["processed"][0]["batch_id"]) == 2  # the run report shows both in one batch

