"""The request pipeline against real servers on 127.0.0.1: an MLflow tracking server with a SQLite
store and S3 artifacts, a SeaweedFS S3 server, DVC pushing to it, and Prefect's test harness.

The tests of this module share one stack and run in order on the tiny world:
pass -> champion; duplicate -> one run; second entity -> new champion that forgets both;
impossible thresholds -> rejected, champion unchanged; MLflow killed mid-request -> failed,
resumable, never half-registered.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import time
from pathlib import Path

import pytest
import yaml

from lethe.config import load_params
from lethe.ops import registry
from lethe.ops.environment import resolve
from lethe.ops.queue import COMPLETED, FAILED, REJECTED, RequestQueue
from lethe.ops.stack import LocalStack
from tests.pipeline.local_stack import free_port, relax_for_pipeline_tests, s3_keys

FIRST, SECOND = "Basil Mahfouz Al-Kuwaiti", "Nikolai Abilov"  # the tiny world's forget01 authors
MODEL_NAME = "lethe-world-tiny"


def _write_params(root: Path, ports: tuple[int, int], unlearn: dict | None = None, **gate) -> Path:
    raw = yaml.safe_load(Path("params.yaml").read_text())
    raw["registry"].update(queue_url=f"sqlite:///{root / 'queue.db'}", workdir=str(root / "requests"),
                           dvc_store=str(root / "dvc-store"), compliance_dir=str(root / "compliance"),
                           retries=1, retry_delay_seconds=1.0)
    raw["stack"].update(state_dir=str(root / "stack"), mlflow_port=ports[0], s3_port=ports[1], prefect=False)
    relax_for_pipeline_tests(raw)
    raw["gate"].update(gate)
    raw["unlearn"].update(unlearn or {})
    path = root / f"params{'-' + '-'.join(gate) if gate else ''}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory, prefect_harness, tiny_world):
    root = tmp_path_factory.mktemp("ops")
    # Ports are picked just before the servers start: picked earlier, the Prefect harness (or any
    # other process) may take one in between.
    ports = (free_port(), free_port())
    params_path = _write_params(root, ports)
    params = load_params(params_path)
    local = LocalStack(params.stack)
    env = resolve(params)  # starts SeaweedFS + MLflow
    yield {"root": root, "ports": ports, "params_path": params_path, "params": params, "env": env, "local": local,
           "model": tiny_world["model_path"], "queue": RequestQueue(env.queue_url)}
    local.down()


def _submit(stack, anchor: str, params_path: Path | None = None) -> tuple[str, dict]:
    from lethe.pipeline.flows.unlearn_request import unlearn_request

    record, _ = stack["queue"].add(anchor, stack["model"], "tester", "integration test")
    state = unlearn_request(record.id, stack["model"], stack["env"].to_dict(),
                            str(params_path or stack["params_path"]), return_state=True)
    return record.id, state


def _s3_keys(stack, bucket: str) -> list[str]:
    return s3_keys(stack["env"].s3_endpoint, bucket)


@pytest.fixture(scope="module")
def first(stack):
    _, state = _submit(stack, FIRST)
    assert state.is_completed(), state.message
    return state.result()


def test_passing_request_is_registered_with_lineage_and_becomes_champion(stack, first):
    assert first["status"] == COMPLETED and first["promoted"] and first["gate"]["passed"]
    client = registry.client(stack["env"].tracking_uri)
    run = client.get_run(first["mlflow_run_id"])
    metrics = run.data.metrics
    assert metrics["after.forget_Q_A_ROUGE"] < metrics["before.forget_Q_A_ROUGE"]
    assert "after.model_utility" in metrics and run.data.params["unlearn.method"] == "npo_gd"
    for key in ("after.heldout_rouge", "before.heldout_rouge", "after.reelicit_return", "after.relearn_heldout_rouge",
                "after.q4_heldout_rouge", "reference.reelicit_return", "reference.relearn_gold_rouge",
                "base.model_utility", "after.privleak"):
        assert key in metrics, key
    training = first["training"]  # the request's result says how its training went, and MLflow agrees
    assert training["steps"] == first["steps"] and training["budget_met"] is not None
    assert ("unlearn.saturated_step" in metrics) == (training["saturation"] is not None)
    assert ("unlearn.note" in run.data.tags) == (training["note"] is not None)
    digests = {d.dataset.name: d.dataset.digest for d in run.inputs.dataset_inputs}
    assert digests == {name: first["dvc_md5"][name] for name in ("forget_set", "neighbor_set", "audit_set")}

    version = client.get_model_version(MODEL_NAME, first["model_version"])
    assert "| relearning |" in version.description and "| reelicitation |" in version.description
    tags = version.tags
    assert tags["lineage.request_id"] == first["request_id"]
    assert tags["lineage.dvc_md5.forget_set"] == first["dvc_md5"]["forget_set"]
    assert len(tags["lineage.git_commit"]) >= 40 and tags["lineage.base_model_hash"]
    assert tags["lineage.prefect_flow_run_id"] not in ("", "none") and tags["gate.status"] == "passed"
    assert registry.alias_version(client, MODEL_NAME, "champion").version == first["model_version"]

    artifact_keys = _s3_keys(stack, stack["params"].stack.artifact_bucket)
    assert any(k.endswith("adapter/adapter_model.safetensors") for k in artifact_keys)
    assert any(k.endswith("mining/graph.json") for k in artifact_keys)
    assert any(k.endswith("MLmodel") for k in artifact_keys)
    assert any(k.endswith("evaluation/report_audit.png") for k in artifact_keys)
    # forget, neighbor and audit sets stay in the DVC remote: MLflow has their digests only
    assert not any(k.endswith(("forget_set.jsonl", "neighbor_set.jsonl", "audit_set.jsonl")) for k in artifact_keys)
    dvc_keys = _s3_keys(stack, stack["params"].stack.dvc_bucket)
    md5 = first["dvc_md5"]["forget_set"]
    assert f"store/files/md5/{md5[:2]}/{md5[2:]}" in dvc_keys  # `dvc push` stored the dataset

    events = [e["event"] for e in stack["queue"].audit_log(first["request_id"])]
    assert events[:2] == ["submitted", "status:running"] and "dvc_pushed" in events
    assert events[-1] == "status:completed" and "alias_moved" in events
    assert Path(first["backend_store_uri"].removeprefix("sqlite:///")).is_file()


def test_registered_model_loads_offline_and_answers(stack, first):
    import mlflow

    model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/{first['model_version']}")
    answers = model.predict(["Where was Basil Mahfouz Al-Kuwaiti born?"])
    assert len(answers) == 1 and isinstance(answers[0], str)


def test_same_request_twice_is_one_run(stack, first):
    record, created = stack["queue"].add(FIRST.upper(), stack["model"], "someone-else", "again")
    assert not created and record.id == first["request_id"]
    from lethe.pipeline.flows.unlearn_request import unlearn_request

    again = unlearn_request(record.id, stack["model"], stack["env"].to_dict(), str(stack["params_path"]))
    assert again["reused"] and again["model_version"] == first["model_version"]
    client = registry.client(stack["env"].tracking_uri)
    runs = client.search_runs([registry.experiment_id(client, stack["params"].registry.experiment)],
                              filter_string=f"tags.`lethe.request_id` = '{record.id}'")
    assert len(runs) == 1


@pytest.fixture(scope="module")
def second(stack, first):
    """The second entity through the real CLI: `lethe forget --json` prints exactly one JSON object."""
    from tests.cli.test_cli_errors import run_cli

    done = run_cli("forget", SECOND, "--model", stack["model"], "--params", str(stack["params_path"]), "--json",
                   timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)  # strict: the whole of stdout is one object (no MLflow "View run" lines)


def test_second_request_composes_and_the_audit_shows_both_forgotten(stack, first, second):
    assert second["status"] == COMPLETED and second["promoted"], second.get("gate")
    assert second["previous_champion"] == first["model_version"]
    assert second["backend_store_uri"] == first["backend_store_uri"]  # the CLI found this test's own stack
    client = registry.client(stack["env"].tracking_uri)
    version = client.get_model_version(MODEL_NAME, second["model_version"])
    assert version.tags["lineage.parent_version"] == first["model_version"]
    assert len(json.loads(version.tags["lineage.adapter_chain"])) == 2
    assert json.loads(version.tags["lineage.forgotten_anchors"]) == [FIRST, SECOND]

    from lethe.pipeline.flows.compliance_run import compliance_run

    report = compliance_run(stack["model"], stack["env"].to_dict(), str(stack["params_path"]))
    entities = {row["anchor"]: row for row in report["audit"]["entities"]}
    assert set(entities) == {FIRST, SECOND}
    assert all(row["forgotten"] and row["in_champion_chain"] for row in entities.values()), entities
    assert report["audit"]["champion"] == second["model_version"] and Path(report["report_path"]).is_file()
    kept = report["audit"]["kept"]  # weakest measured 0.79x (world.seed 1234), 0.71x (7) of the base; bound 0.5x
    assert report["audit"]["all_kept"] and kept["kept"] and kept["entities"] >= 2, kept


def test_compliance_audit_does_not_trust_the_champion_chain(stack, first, second):
    """An operator moves the alias behind Lethe's back: the queue still says SECOND was forgotten, the
    champion no longer holds its adapter, and the re-audit flags it from the queue, not from the
    champion's own parent links (which no longer mention SECOND)."""
    from lethe.ops.compliance import audit_champion

    client = registry.client(stack["env"].tracking_uri)
    client.set_registered_model_alias(MODEL_NAME, "champion", first["model_version"])
    try:
        audit = audit_champion(stack["params"], stack["env"], stack["model"])
    finally:
        client.set_registered_model_alias(MODEL_NAME, "champion", second["model_version"])
    rows = {r["anchor"]: r for r in audit["entities"]}
    assert set(rows) == {FIRST, SECOND} and rows[FIRST]["in_champion_chain"]
    assert not rows[SECOND]["in_champion_chain"] and not audit["all_forgotten"], rows[SECOND]
    assert rows[SECOND]["questions"] > 0  # measured on the champion from its own audit set, not skipped


def test_the_fanned_out_audit_measures_what_the_serial_audit_does(stack, first, second):
    """The compliance run's audit on a Dask LocalCluster: every entity measured by a worker process,
    the same rows as the audit run in this process."""
    import os

    from lethe.ops.compliance import audit_champion as audit_here
    from lethe.pipeline.flows.compliance_run import audit_champion as audit_on_dask

    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(stack["params"].scale.threads_per_worker)  # as on a worker: same kernels, same numbers
    try:
        serial = audit_here(stack["params"], stack["env"], stack["model"])
    finally:
        torch.set_num_threads(threads)
    fanned = audit_on_dask(stack["model"], stack["env"], stack["params"])
    workers = [row.pop("audited_by") for row in fanned["entities"]]
    assert str(os.getpid()) not in {w.rsplit(":", 1)[1] for w in workers}
    assert fanned["all_forgotten"] == serial["all_forgotten"] and fanned["champion"] == serial["champion"]
    assert fanned["kept"]["value"] == serial["kept"]["value"] and fanned["kept"]["entities"] > 0
    assert [r["anchor"] for r in fanned["entities"]] == [r["anchor"] for r in serial["entities"]] == [FIRST, SECOND]
    for mine, theirs in zip(fanned["entities"], serial["entities"]):
        assert mine.keys() == theirs.keys()
        for key, value in mine.items():
            assert value == (pytest.approx(theirs[key], abs=0.02) if isinstance(value, float) else theirs[key]), key


def test_failing_gate_is_rejected_and_champion_unchanged(stack, first, second):
    client = registry.client(stack["env"].tracking_uri)
    champion_before = registry.alias_version(client, MODEL_NAME, "champion").version
    # No adapter reaches a gold ROUGE ratio of 0: a short training is rejected as surely as a long one.
    impossible = _write_params(stack["root"], stack["ports"], unlearn={"max_steps": 16}, max_forget_ratio=0.0)
    request_id, state = _submit(stack, "Jaime Vasquez", impossible)
    result = state.result()
    assert result["status"] == REJECTED and not result["promoted"]
    assert any(r.startswith("gold_forgetting") for r in result["gate"]["reasons"])
    assert stack["queue"].get(request_id).status == REJECTED
    version = client.get_model_version(MODEL_NAME, result["model_version"])
    assert version.tags["gate.status"] == "rejected" and not version.aliases
    assert registry.alias_version(client, MODEL_NAME, "champion").version == champion_before

    # A tag forged over REST does not make it promotable: the ledger holds the verdict.
    client.set_model_version_tag(MODEL_NAME, result["model_version"], "gate.status", "passed")
    from tests.cli.test_cli_errors import assert_one_clear_line, run_cli

    forged = run_cli("promote", result["model_version"], "--model", stack["model"], "--params",
                     str(stack["params_path"]), "--json")
    assert_one_clear_line(forged, "no passing gate decision in the audit ledger")
    assert_one_clear_line(run_cli("promote", "999", "--model", stack["model"], "--params", str(stack["params_path"]),
                                  "--json"), "has no version '999'")
    assert registry.alias_version(client, MODEL_NAME, "champion").version == champion_before


def test_rollback_supersedes_and_requeues_what_it_unforgets(stack, first, second):
    from tests.cli.test_cli_errors import run_cli

    done = run_cli("rollback", "--model", stack["model"], "--params", str(stack["params_path"]), "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert (out["rolled_back"], out["champion"]) == (second["model_version"], first["model_version"])
    assert [r["superseded"] for r in out["requeued"]] == [second["request_id"]]
    queue = stack["queue"]
    assert queue.get(second["request_id"]).status == "superseded"
    again = queue.get(out["requeued"][0]["requeued"])
    assert again.status == "pending" and again.anchor == SECOND
    client = registry.client(stack["env"].tracking_uri)
    assert registry.alias_version(client, MODEL_NAME, "champion").version == first["model_version"]


def test_mlflow_down_mid_request_fails_resumably_and_never_half_registers(stack, first):
    queue, local = stack["queue"], stack["local"]
    record, _ = queue.add("Chukwu Akabueze", stack["model"], "tester", "fault injection")
    request_dir = Path(stack["params"].registry.workdir) / record.id

    def kill_mlflow_after_training() -> None:
        deadline = time.monotonic() + 600
        while not list(request_dir.glob("from-*/unlearn/unlearn.json")) and time.monotonic() < deadline:
            time.sleep(0.2)
        local.stop_mlflow(hard=True)

    killer = threading.Thread(target=kill_mlflow_after_training, daemon=True)
    killer.start()
    from lethe.pipeline.flows.unlearn_request import unlearn_request

    state = unlearn_request(record.id, stack["model"], stack["env"].to_dict(), str(stack["params_path"]),
                            return_state=True)
    killer.join()
    assert state.is_failed()
    assert queue.get(record.id).status == FAILED
    local.start_mlflow()
    client = registry.client(stack["env"].tracking_uri)
    assert registry.find_version(client, MODEL_NAME, record.id) is None  # nothing half-registered

    resumed = unlearn_request(record.id, stack["model"], stack["env"].to_dict(), str(stack["params_path"]))
    assert resumed["status"] in (COMPLETED, REJECTED)
    assert queue.get(record.id).attempts == 2
    runs = client.search_runs([registry.experiment_id(client, stack["params"].registry.experiment)],
                              filter_string=f"tags.`lethe.request_id` = '{record.id}'")
    assert len(runs) == 1
    version = registry.find_version(client, MODEL_NAME, record.id)
    assert version.tags["lineage.request_id"] == record.id and version.tags["gate.status"]


CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path("test-artifacts")


def test_mlflow_ui_shows_the_version_and_its_lineage(stack, first):
    """Headless Chromium opens the MLflow UI of this test run and finds the version's lineage tags."""
    import os

    if not CHROMIUM.exists():
        if os.environ.get("LETHE_REQUIRE_BROWSER") == "1":
            pytest.fail("Chromium is required (.ci/run installs it) but /usr/bin/chromium is missing")
        pytest.skip("no Chromium here (`apt-get install chromium`; CI installs it)")
    from playwright.sync_api import sync_playwright

    url = f"{stack['env'].tracking_uri}/#/models/{MODEL_NAME}/versions/{first['model_version']}"
    SCREENSHOTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2000})
            page.goto(url)
            lineage = page.get_by_text("lineage.request_id").first
            lineage.wait_for(timeout=60_000)
            body = page.inner_text("body")
            lineage.scroll_into_view_if_needed()
            page.screenshot(path=str(SCREENSHOTS / "mlflow_model_version.png"))
        finally:
            browser.close()
    assert f"Version {first['model_version']}" in body
    for tag in ("lineage.request_id", "lineage.git_commit", "lineage.dvc_md5.forget_set", "gate.status"):
        assert tag in body
    assert first["request_id"] in body and first["dvc_md5"]["forget_set"] in body


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_artifacts_survive_an_s3_crash_and_a_stack_restart(stack, first, tmp_path):
    """SeaweedFS keeps objects on disk: after a SIGKILL of the S3 server and a full `stack down`/`up`,
    the v1 adapter downloads from MLflow and the forget set comes back through `dvc pull`."""
    local, env = stack["local"], stack["env"]
    before = {bucket: set(_s3_keys(stack, bucket)) for bucket in (stack["params"].stack.artifact_bucket,
                                                                      stack["params"].stack.dvc_bucket)}
    local.stop_s3(hard=True)  # a crash, not a clean stop
    local.down()
    assert local.info() is None
    info = local.up()
    assert (info.tracking_uri, info.s3_endpoint) == (env.tracking_uri, env.s3_endpoint)  # its own ports again
    for bucket, keys in before.items():
        assert keys <= set(_s3_keys(stack, bucket)), bucket

    client = registry.client(info.tracking_uri)
    run_id = client.get_model_version(MODEL_NAME, first["model_version"]).run_id
    downloaded = Path(client.download_artifacts(run_id, "adapter", str(tmp_path)))
    weights = downloaded / "adapter_model.safetensors"
    assert weights.stat().st_size > 0

    store_root = Path(stack["params"].registry.dvc_store)
    workspace = store_root / "requests" / first["request_id"]
    (workspace / "forget_set").unlink()
    shutil.rmtree(workspace / "adapter")
    shutil.rmtree(store_root / ".dvc" / "cache")  # only the remote holds them now
    restored = env.store().restore(first["request_id"], "forget_set")
    assert hashlib.md5(restored.read_bytes()).hexdigest() == first["dvc_md5"]["forget_set"]
    restored_adapter = env.store().restore(first["request_id"], "adapter")
    assert _sha256(restored_adapter / "adapter_model.safetensors") == _sha256(weights)
