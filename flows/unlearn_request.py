"""Prefect flow: one queued request through mining, unlearning, evaluation, versioning, the gate
and the registry. The request's status and every decision go to the queue's audit ledger.

A request that fails (a server down after the retries, a crash) ends `failed` with its error and
is resumable: run it again and finished steps are reused from its work directory, its MLflow run
and model version are found by request id, never duplicated. A completed or rejected request
returns its stored result without running anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from flows.mine import run_mining_tasks
from lethe.config import load_params
from lethe.ops.environment import OpsEnv
from lethe.ops.queue import COMPLETED, FAILED, REJECTED, RUNNING, RequestQueue
from tasks import request_ops


def _retrying(task_fn, retries: int, delay: float):
    return task_fn.with_options(retries=retries, retry_delay_seconds=delay)


@flow(name="unlearn_request")
def unlearn_request(request_id: str, base_model: str, ops: dict, params_path: str | None = None) -> dict[str, Any]:
    """Run (or resume) one queued request; returns its result (also stored in the queue)."""
    params = load_params(params_path)
    env = OpsEnv(**ops)
    queue = RequestQueue(env.queue_url)
    record = queue.get(request_id)
    if record.status in (COMPLETED, REJECTED):
        queue.audit("rerun_skipped", request_id, detail={"status": record.status})
        return {**(record.result or {}), "status": record.status, "request_id": request_id, "reused": True}
    if record.status == RUNNING:  # the process that ran it died: resume in place
        queue.audit("resumed_after_crash", request_id)
    else:
        queue.transition(request_id, RUNNING)
    retries, delay = params.registry.retries, params.registry.retry_delay_seconds
    try:
        result = _run(params, env, queue, record.to_dict(), base_model, params_path, retries, delay)
    except Exception as exc:
        queue.transition(request_id, FAILED, detail={"error": f"{type(exc).__name__}: {exc}"[:1000]},
                         result={"request_id": request_id, "status": FAILED, "error": str(exc)[:1000]})
        raise
    final = COMPLETED if result["status"] in (COMPLETED, "nothing_memorized") else REJECTED
    queue.transition(request_id, final, result=result, detail={"outcome": result["status"]})
    return result


def _run(params, env: OpsEnv, queue: RequestQueue, record: dict, base_model: str, params_path: str | None,
         retries: int, delay: float) -> dict[str, Any]:
    request_id = record["id"]
    plan = _retrying(request_ops.plan, retries, delay)(record, base_model, env.to_dict(), params_path,
                                                       str(flow_run.get_id() or ""))
    mine_request = {"anchor": record["anchor"], "model_path": plan["start_model"], "source": "mage",
                    "description": record["description"]}
    mine_dir = str(Path(plan["workdir"]) / "mine")
    base = {"request_id": request_id, "backend_store_uri": env.backend_store_uri, "mlflow_run_id": plan["run_id"],
            "model_name": plan["model_name"], "model_version": None, "promoted": False, "adapter_path": None,
            "tracking_uri": env.tracking_uri, "workdir": plan["workdir"]}
    mined = run_mining_tasks(mine_request, mine_dir, params_path)
    if mined["status"] == "nothing_memorized":
        queue.audit("nothing_memorized", request_id, detail={"anchor": record["anchor"]})
        return {**base, "status": "nothing_memorized"}
    if not mined["validation"]["success"]:
        from lethe.supervision.validate import describe_failures

        reasons = [f"data_quality: {describe_failures(mined['validation'])}"]
        queue.audit("gate_decision", request_id, detail={"status": "rejected", "reasons": reasons})
        return {**base, "status": REJECTED, "gate": {"passed": False, "reasons": reasons},
                "graph_png": mined.get("graph_png")}
    trained = request_ops.unlearn(plan, params_path)
    adapter = trained["adapter_path"]
    evaluation = request_ops.evaluate(plan, adapter, params_path)
    md5s = _retrying(request_ops.version, retries, delay)(plan, adapter, evaluation, env.to_dict())
    queue.audit("dvc_pushed", request_id, detail={"md5": md5s, "remote": env.dvc_remote})
    registered = _retrying(request_ops.register, retries, delay)(plan, adapter, evaluation, md5s, env.to_dict(),
                                                                 params_path)
    gate = registered["gate"]
    queue.audit("gate_decision", request_id, detail={"status": gate["status"], "reasons": gate["reasons"],
                                                     "model_version": registered["model_version"]})
    if gate["passed"]:
        queue.audit("alias_moved", request_id, detail={"alias": "challenger", "model": registered["model_name"],
                                                       "version": registered["model_version"]})
    if registered["promoted"]:
        queue.audit("alias_moved", request_id, detail={"alias": "champion", "model": registered["model_name"],
                                                       "version": registered["model_version"],
                                                       "previous": registered["previous_champion"]})
    return {**base, **{k: registered[k] for k in ("model_version", "promoted", "previous_champion", "gate")},
            "status": COMPLETED if gate["passed"] else REJECTED, "adapter_path": adapter,
            "steps": trained.get("steps"), "before": _headline(evaluation["before"]),
            "after": _headline(evaluation["after"]), "report_path": evaluation.get("report_path"),
            "graph_png": mined.get("graph_png"), "dvc_md5": md5s,
            "mlflow_ui": f"{env.tracking_uri}/#/models/{registered['model_name']}/versions/{registered['model_version']}"}


def _headline(metrics: dict) -> dict:
    keys = ("forget_Q_A_ROUGE", "forget_set_rouge", "forget_quality", "model_utility", "retain_Q_A_ROUGE",
            "mia_min_k_plus_plus_auc")
    return {k: metrics[k] for k in keys if metrics.get(k) is not None}
