"""An agentic (SBU) request (the flow behind `lethe agentic-forget`) against real servers on 127.0.0.1 (MLflow with a SQLite
store and S3 artifacts, a SeaweedFS S3 server, DVC pushing to it, Prefect's test harness), on the tiny
world: leak rates of the four variants, MLflow rounds and registration, the live memory, and the
DVC round trip of the memory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from lethe.agent.memory import MemoryStore, MemoryWriteBlocked
from lethe.cli import app
from lethe.config import load_params
from lethe.ops import registry
from lethe.ops.environment import resolve
from lethe.ops.queue import AGENTIC, COMPLETED, REJECTED, RequestQueue
from lethe.ops.stack import LocalStack
from tests.pipeline.local_stack import free_port, s3_keys

TARGET = "Basil Mahfouz Al-Kuwaiti"
MODEL_NAME = "lethe-agentic-world-tiny"


@pytest.fixture(scope="module")
def agentic(tmp_path_factory, prefect_harness, tiny_world):
    root = tmp_path_factory.mktemp("agentic")
    raw = yaml.safe_load(Path("params.yaml").read_text())
    raw["registry"].update(queue_url=f"sqlite:///{root / 'queue.db'}", workdir=str(root / "requests"),
                           dvc_store=str(root / "dvc-store"), retries=1, retry_delay_seconds=1.0)
    raw["stack"].update(state_dir=str(root / "stack"), mlflow_port=free_port(), s3_port=free_port(), prefect=False)
    raw["agent"].update(memory_dir=str(root / "memory"), rounds=2, steps_per_round=30, eval_retain_questions=20)
    params_path = root / "params.yaml"
    params_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    params = load_params(params_path)
    local = LocalStack(params.stack)
    env = resolve(params)
    runner = CliRunner()
    memory = root / "memory" / "agent.db"
    seeded = runner.invoke(app, ["memory", "seed", "--model", tiny_world["model_path"], "--memory", str(memory),
                                 "--params", str(params_path), "--json"])
    assert seeded.exit_code == 0, seeded.output
    with MemoryStore(memory, create=False) as store:
        original_digest = store.digest()
    # The flow runs in-process, not through CliRunner: Prefect's log handlers would keep CliRunner's
    # captured streams, which are closed after invoke, and crash later tests' logging.
    from lethe.pipeline.flows.agentic_unlearn import agentic_unlearn

    queue = RequestQueue(env.queue_url)
    record, _ = queue.add(TARGET, str(Path(tiny_world["model_path"]).resolve()), "tester", "integration test",
                          kind=AGENTIC, memory=str(memory))
    state = agentic_unlearn(record.id, env.to_dict(), str(params_path), return_state=True)
    assert state.is_completed(), state.message
    yield {"root": root, "params": params, "params_path": params_path, "env": env, "memory": memory,
           "original_digest": original_digest, "result": state.result(), "queue": queue, "record": record,
           "runner": runner, "model": tiny_world["model_path"]}
    local.down()


def test_output_has_adapter_memory_and_leak_rates_per_variant(agentic):
    r = agentic["result"]
    assert (Path(r["adapter_path"]) / "adapter_config.json").is_file()
    assert Path(r["memory_path"]) == agentic["memory"]
    assert set(r["leak_rates"]) == {"before", "memory_only", "parameters_only", "sbu"}
    for rates in r["leak_rates"].values():
        assert set(rates) == {"retrieval", "generation"} and all(0.0 <= v <= 1.0 for v in rates.values())
    before, sbu = r["leak_rates"]["before"], r["leak_rates"]["sbu"]
    assert sbu["retrieval"] < before["retrieval"] and sbu["generation"] < before["generation"]
    assert sbu["retrieval"] <= r["leak_rates"]["parameters_only"]["retrieval"]
    assert sbu["generation"] <= r["leak_rates"]["memory_only"]["generation"]
    # Retain answer quality after two SRA rounds is a property of the method on one build, not of the
    # pipeline: measured 0.785 (world.seed 1234, this machine), above 0.8 (the same seed elsewhere) and
    # 0.253 (world.seed 7). What the pipeline guarantees is that it is measured and that the gate acts
    # on it: a version whose retain quality fell below gate.min_utility_ratio is never promoted.
    ratio = r["retain_quality_ratio"]
    assert r["probes"]["held_out"] and 0.0 < ratio < 2.0
    if ratio < agentic["params"].gate.min_utility_ratio:
        assert not r["gate"]["passed"] and not r["promoted"]
        assert any(reason.startswith("retain_quality") for reason in r["gate"]["reasons"])


def test_the_request_lives_in_the_queue_and_its_ledger(agentic):
    """An agentic request is a queued request like any other: its lease, its final status and stored
    result, the gate decision, alias moves and the memory replacement in the audit ledger; run again,
    it returns its stored result without running anything."""
    from lethe.pipeline.flows.agentic_unlearn import agentic_unlearn

    queue, r = agentic["queue"], agentic["result"]
    record = queue.get(agentic["record"].id)
    assert r["request_id"] == record.id and r["kind"] == AGENTIC and record.kind == AGENTIC
    assert record.status == (COMPLETED if r["gate"]["passed"] else REJECTED) and record.lease_owner is None
    assert record.result["model_version"] == r["model_version"] and record.attempts == 1
    events = [e["event"] for e in queue.audit_log(record.id)]
    assert events[:2] == ["submitted", "status:running"] and events[-1] == f"status:{record.status}"
    assert {"dvc_pushed", "gate_decision", "memory_replaced"} <= set(events)
    decision = next(e for e in queue.audit_log(record.id) if e["event"] == "gate_decision")["detail"]
    assert decision["kind"] == AGENTIC and decision["model_version"] == r["model_version"]
    assert ("alias_moved" in events) == r["promoted"]
    again = agentic_unlearn(record.id, agentic["env"].to_dict(), str(agentic["params_path"]))
    assert again["reused"] is True and again["model_version"] == r["model_version"]
    assert queue.get(record.id).attempts == 1


def test_rounds_and_registration_are_in_mlflow(agentic):
    r, env = agentic["result"], agentic["env"]
    client = registry.client(env.tracking_uri)
    history = client.get_metric_history(r["mlflow_run_id"], "round.retrieval")
    assert [m.step for m in history] == [rd["round"] for rd in r["rounds"]]
    run = client.get_run(r["mlflow_run_id"])
    assert run.data.metrics["sbu.retrieval_leak"] == r["leak_rates"]["sbu"]["retrieval"]
    version = client.get_model_version(MODEL_NAME, r["model_version"])
    assert version.tags["lineage.dvc_md5.memory_before"] == r["dvc_md5"]["memory_before"]
    assert version.tags["memory.snapshot_artifact"].endswith("/memory_snapshot")
    assert "| retrieval_leak |" in version.description and "| retain_quality |" in version.description
    keys = s3_keys(env.s3_endpoint, agentic["params"].stack.artifact_bucket)
    assert any(k.endswith("memory_snapshot/sbu.db") for k in keys)
    assert any("/models/" in k and k.endswith("artifacts/adapter/adapter_model.safetensors") for k in keys)
    if r["gate"]["passed"]:
        assert registry.alias_version(client, MODEL_NAME, "champion").version == r["model_version"]


def test_live_memory_forgot_the_target_and_blocks_it(agentic):
    runner = agentic["runner"]
    searched = runner.invoke(app, ["memory", "search", f"Where was {TARGET} born?", "--memory",
                                   str(agentic["memory"]), "--params", str(agentic["params_path"]), "--json"])
    assert searched.exit_code == 0, searched.output
    hits = json.loads(searched.stdout)["hits"]
    assert hits and all("Basil" not in h["text"] and "Kuwaiti" not in h["text"] for h in hits)
    with MemoryStore(agentic["memory"], create=False) as store:
        assert all(TARGET not in item.text for item in store.items())
        with pytest.raises(MemoryWriteBlocked):
            store.add("note", f"{TARGET} was born in Kuwait City.")


def test_memory_round_trips_through_dvc(agentic):
    runner, r = agentic["runner"], agentic["result"]
    for which, expected in (("before", agentic["original_digest"]), ("after", None)):
        restored = runner.invoke(app, ["memory", "restore", r["request_id"], "--which", which, "--memory",
                                       str(agentic["memory"]), "--params", str(agentic["params_path"]), "--json"])
        assert restored.exit_code == 0, restored.output
        out = json.loads(restored.stdout)
        assert out["md5"] == r["dvc_md5"][f"memory_{which}"]
        if expected:
            assert out["digest"] == expected  # the pre-unlearning memory, item for item
        else:
            assert out["digest"] != agentic["original_digest"]


def test_user_errors_are_one_line(agentic):
    runner = agentic["runner"]
    empty = runner.invoke(app, ["agentic-forget", "  ", "--model", agentic["model"], "--params",
                                str(agentic["params_path"]), "--json"])
    assert empty.exit_code == 2 and "anchor is empty" in empty.stdout
    missing = runner.invoke(app, ["memory", "restore", "agentic-nope", "--memory", str(agentic["memory"]),
                                  "--params", str(agentic["params_path"]), "--json"])
    assert missing.exit_code == 2 and "error" in json.loads(missing.stdout)


def _live_digest(memory: Path) -> str:
    with MemoryStore(memory, create=False) as store:
        return store.digest()


def test_the_compliance_run_re_audits_the_live_agent(agentic):
    """The nightly run audits the agent as served (agentic champion + live memory, on a scratch copy) for
    the entity; put the pre-unlearning memory back and the audit flags the entity as not forgotten."""
    from lethe.ops.agentic_audit import audit_agent
    from lethe.pipeline.flows.compliance_run import compliance_run

    r, params, env, queue = agentic["result"], agentic["params"], agentic["env"], agentic["queue"]
    model = str(Path(agentic["model"]).resolve())
    live_before = _live_digest(agentic["memory"])
    out = compliance_run(model, env.to_dict(), str(agentic["params_path"]))
    assert _live_digest(agentic["memory"]) == live_before  # the audit never writes to the live memory
    [row] = out["agent_audit"]["entities"]
    record = queue.get(r["request_id"])
    assert (row["anchor"], row["request_id"], row["status"], row["version"]) == (
        TARGET, record.id, record.status, r["model_version"])
    assert row["in_champion_chain"] == r["promoted"] and row["held_out"] and row["probes"] > 0
    bounds = params.agent
    assert row["forgotten"] == (row["retrieval_leak"] <= bounds.retrieval_leak_bound
                                and row["generation_leak"] <= bounds.generation_leak_bound)
    assert out["audit"]["entities"] == []  # the weights champion's audit does not take agentic requests
    ledger = [e for e in queue.audit_log() if e["event"] == "compliance_audit"][-1]["detail"]["agent"]
    assert ledger["entities"] == [[TARGET, row["forgotten"]]]
    report = Path(out["report_path"]).read_text()
    assert "## Agent audit" in report and f"| {TARGET} | {record.id} |" in report

    runner, flags = agentic["runner"], []
    for which in ("before", "after"):
        restored = runner.invoke(app, ["memory", "restore", r["request_id"], "--which", which, "--memory",
                                       str(agentic["memory"]), "--params", str(agentic["params_path"]), "--json"])
        assert restored.exit_code == 0, restored.output
        flags.append(audit_agent(params, env, model, queue)["entities"][0])
    came_back, after = flags
    assert came_back["retrieval_leak"] > after["retrieval_leak"] and came_back["forgotten"] is False
    assert after["retrieval_leak"] == pytest.approx(row["retrieval_leak"], abs=0.05)


def test_the_next_agentic_request_starts_from_the_agentic_champion(agentic):
    """Agentic requests chain: the next one mines and trains on the base model with the champion's
    adapters merged in; a resumed request whose own version is champion starts where it started; a
    promotion after the champion moved is refused."""
    from dataclasses import replace

    from lethe.errors import LetheError
    from lethe.ops import agentic_steps

    r, params, env = agentic["result"], agentic["params"], agentic["env"]
    model = str(Path(agentic["model"]).resolve())
    client = registry.client(env.tracking_uri)
    adapter = str(Path(r["adapter_path"]).resolve())
    version = client.get_model_version(MODEL_NAME, r["model_version"])
    assert json.loads(version.tags["lineage.adapter_chain"]) == [adapter]
    assert version.tags["lineage.parent_version"] == "none"
    if not r["promoted"]:  # the gate rejected it on this build: make it champion by hand to test the chain
        client.set_registered_model_alias(MODEL_NAME, "champion", r["model_version"])
    try:
        plan = agentic_steps.prepare(params, "agentic-next", "Another Author", model, str(agentic["memory"]),
                                     env.tracking_uri)
        assert (plan.parent_version, plan.adapter_chain) == (r["model_version"], [adapter])
        assert plan.model_path != model and (Path(plan.model_path) / "config.json").is_file()
        assert not plan.workdir.endswith("from-base")
        own = agentic_steps.prepare(params, r["request_id"], TARGET, model, str(agentic["memory"]), env.tracking_uri)
        assert (own.parent_version, own.adapter_chain, own.model_path) == (None, [], model)
        with pytest.raises(LetheError, match="moved"):
            agentic_steps.promote_if_unmoved(client, replace(plan, parent_version=None), "99")
    finally:
        if not r["promoted"]:
            client.delete_registered_model_alias(MODEL_NAME, "champion")
