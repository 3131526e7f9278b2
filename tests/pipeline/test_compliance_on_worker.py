"""The compliance run as a deployment run on the local stack's Prefect worker, as a user starts it.

`lethe stack up` (SeaweedFS, MLflow, a Prefect server with prefect.yaml's deployments applied, a
process worker), two `lethe request add`, then `lethe compliance-run --worker`: the flow run is
executed by the worker on the `lethe-process` pool, not by the command, and the two requests
chain (the second starts from the first one's champion), both mined ahead at once on a Dask
LocalCluster. All through real subprocesses.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

from lethe.config import DEFAULT_PARAMS
from lethe.layout import RequestLayout
from lethe.ops import registry
from lethe.ops.prefect_service import pause_deployment
from lethe.ops.queue import COMPLETED, RequestQueue
from tests.pipeline.local_stack import free_port, lethe_json, relax_for_pipeline_tests

FIRST, SECOND = "Basil Mahfouz Al-Kuwaiti", "Nikolai Abilov"


def _params(root: Path) -> Path:
    raw = yaml.safe_load(DEFAULT_PARAMS.read_text())
    raw["registry"].update(queue_url=f"sqlite:///{root / 'queue.db'}", workdir=str(root / "requests"),
                           dvc_store=str(root / "dvc_store"), compliance_dir=str(root / "compliance"))
    raw["stack"].update(state_dir=str(root / "stack"), mlflow_port=free_port(), s3_port=free_port(),
                        prefect_port=free_port())
    relax_for_pipeline_tests(raw)  # the worker path is under test, not the method
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _lethe(params: Path, *args: str) -> dict:
    return lethe_json(params, *args, timeout=900)


def test_compliance_run_goes_through_the_worker_and_chains_the_requests(tiny_world, tmp_path):
    params = _params(tmp_path)
    model = tiny_world["model_path"]
    stack = _lethe(params, "stack", "up")
    try:
        ui = stack["prefect_api_url"].removesuffix("/api")
        with urllib.request.urlopen(f"{stack['prefect_api_url']}/deployments/name/compliance_run/compliance-run",
                                    timeout=10) as response:
            deployment = json.load(response)
        assert deployment["work_pool_name"] == "lethe-process"
        assert deployment["schedules"][0]["schedule"]["cron"] == "0 2 * * *"  # the nightly run, in the UI
        pause_deployment(stack["prefect_api_url"])  # lest it fire mid-test (CI at 02:00 UTC) and share the queue
        with urllib.request.urlopen(f"{stack['prefect_api_url']}/deployments/{deployment['id']}", timeout=10) as r:
            assert json.load(r)["paused"] is True  # a run started by hand (--worker, below) still goes through
        for anchor in (FIRST, SECOND):
            _lethe(params, "request", "add", anchor, "--requester", "tester", "--reason", "worker test",
                   "--model", model)

        result = _lethe(params, "compliance-run", "--worker", "--model", model)

        assert result["state"] == "Completed" and result["work_pool"] == "lethe-process"
        assert result["prefect_ui"].startswith(ui)
        with urllib.request.urlopen(f"{stack['prefect_api_url']}/flow_runs/{result['flow_run_id']}", timeout=10) as r:
            run = json.load(r)
        assert run["work_pool_name"] == "lethe-process" and run["deployment_id"] == deployment["id"]
        worker_log = (tmp_path / "stack" / "worker.log").read_text()
        assert result["flow_run_id"] in worker_log  # the worker, not this command, ran it

        queue = RequestQueue(f"sqlite:///{tmp_path / 'queue.db'}")
        records = {r.anchor: r for r in queue.list()}
        assert {records[a].status for a in (FIRST, SECOND)} == {COMPLETED}
        first, second = (records[a].result for a in (FIRST, SECOND))
        assert first["promoted"] and second["promoted"]
        client = registry.client(stack["tracking_uri"])
        version = client.get_model_version(second["model_name"], second["model_version"])
        assert version.tags["lineage.parent_version"] == first["model_version"]  # serialized on one chain
        assert len(json.loads(version.tags["lineage.adapter_chain"])) == 2
        # Training and promotion held the model's Prefect global concurrency limit (one slot, given back).
        gcl = urllib.parse.quote(f"model:{second['model_name']}")
        with urllib.request.urlopen(f"{stack['prefect_api_url']}/v2/concurrency_limits/{gcl}", timeout=10) as r:
            limit = json.load(r)
        assert limit["limit"] == 1 and limit["active_slots"] == 0, limit

        # Both were mined at once, on Dask workers, from the champion the run began with (none: the
        # base model). The second request trained from the first one's champion on what was mined
        # ahead, and says so in the ledger and in its version's lineage.
        mined = {row["anchor"]: row for row in result["mined_ahead"]}
        assert {mined[a]["status"] for a in (FIRST, SECOND)} == {"validated"}, mined
        assert all(row["champion"] is None and row["mined_by"] for row in mined.values())
        ledger = queue.audit_log()
        assert {e["request_id"] for e in ledger if e["event"] == "mined_ahead"} == {records[FIRST].id,
                                                                                    records[SECOND].id}
        adopted = [e for e in ledger if e["event"] == "mining_adopted"]
        assert [e["request_id"] for e in adopted] == [records[SECOND].id]
        assert Path(adopted[0]["detail"]["mined_on"]).resolve() == Path(model).resolve()
        assert version.tags["lineage.mining_model_hash"] == version.tags["lineage.base_model_hash"]
        assert version.tags["lineage.start_model_hash"] != version.tags["lineage.base_model_hash"]

        # Each request's evaluation shards ran on Dask workers too, and every phase used the run's one
        # cluster: mining, both evaluations and the audit, all on its scale.workers (2) processes.
        where = set()
        for request in (first, second):
            record = json.loads((RequestLayout(Path(request["workdir"])).evaluation_dir / "evaluation.json").read_text())
            shards = record["evaluation"]["shards"]
            assert set(shards) == {"suite:before", "suite:after", "audit:before", "audit:after", "audit:reference"}
            assert "in-process" not in shards.values()
            where |= set(shards.values())
        where |= {row["mined_by"] for row in mined.values()} | {row["audited_by"] for row in result["audit"]["entities"]}
        assert len(where) <= 2, where
    finally:
        _lethe(params, "stack", "down")
