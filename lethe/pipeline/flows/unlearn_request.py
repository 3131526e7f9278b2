"""Prefect flow: one queued request through mining, unlearning, evaluation, versioning, the gate
and the registry. The request's status and every decision go to the queue's audit ledger.

A request that fails (a server down after the retries, a crash, a SIGTERM) ends `failed` with
its error and is resumable: run it again and it re-plans from the current champion; finished steps
of the same plan are reused from its work directory, its MLflow run and model version are found by
request id and starting model, never duplicated. A completed, rejected, superseded or cancelled
request returns its stored result without running anything.

One runner per request: the flow claims a lease in the queue and renews it while it works; a
second runner given the same request skips it, and a dead runner's request is taken over once its
lease expires. Training and promotion of one registered model are serialized by a lock held from
plan to promotion, and promotion happens only if the champion is still the one the request planned
from.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from lethe.config import Params, load_params
from lethe.evaluate import metrics
from lethe.mage import Request
from lethe.ops import mine_ahead
from lethe.ops.environment import OpsEnv
from lethe.ops.queue import COMPLETED, REJECTED, UNLEARN, RequestQueue
from lethe.ops.registry import version_url
from lethe.ops.request_steps import RequestPlan, model_name_for
from lethe.pipeline.flows.evaluation import evaluate_request
from lethe.pipeline.flows.leased import flow_owner, queued_request, run_leased
from lethe.pipeline.flows.mine import run_mining_tasks
from lethe.pipeline.tasks import request_ops
from lethe.unlearn.run import training_summary


def retrying(task_fn, retries: int, delay: float):
    """The task with the registry's retries (for steps that talk to a server)."""
    return task_fn.with_options(retries=retries, retry_delay_seconds=delay)


@flow(name="unlearn_request")
def unlearn_request(request_id: str, base_model: str, ops: dict, params_path: str | None = None) -> dict[str, Any]:
    """Run (or resume) one queued request; returns its result (also stored in the queue). The params
    file is read once, here: every task gets this same Params object, and lineage hashes it."""
    params = load_params(params_path)
    env = OpsEnv(**ops)
    queue = RequestQueue(env.queue_url)
    record = queued_request(queue, request_id, UNLEARN)
    lock = f"model:{model_name_for(base_model, params.registry.model_prefix)}"
    retries, delay = params.registry.retries, params.registry.retry_delay_seconds
    return run_leased(queue, record, flow_owner(), lock,
                      lambda: _run(params, env, queue, record.to_dict(), base_model, retries, delay))


def result_base(plan: RequestPlan, env: OpsEnv) -> dict[str, Any]:
    """The fields every result of a request has, whatever its outcome."""
    return {"request_id": plan.request_id, "backend_store_uri": env.backend_store_uri, "mlflow_run_id": plan.run_id,
            "model_name": plan.model_name, "model_version": None, "promoted": False, "adapter_path": None,
            "tracking_uri": env.tracking_uri, "workdir": plan.workdir}


def mine_supervision(params: Params, env: OpsEnv, queue: RequestQueue, plan: RequestPlan,
                     record: dict) -> tuple[RequestPlan, dict, dict | None]:
    """MAGE for a planned request (adopting what a compliance run mined ahead): (plan, mining result,
    the request's final result when it ends here: nothing memorized, or data quality failed)."""
    request_id = record["id"]
    mined_on = mine_ahead.adopt(params, plan)  # supervision a compliance run mined ahead, on an older champion
    if mined_on:
        plan = replace(plan, mined_on=mined_on)
        queue.audit("mining_adopted", request_id, detail={"mined_on": mined_on, "start_model": plan.start_model})
    # The description only disambiguates for the person who filed it: it is never put into prompts, so
    # it cannot end up in forget sets, the DVC remote or MLflow.
    mine_request = Request(anchor=record["anchor"], model_path=plan.mined_on or plan.start_model, source="mage",
                           description=None)
    base = result_base(plan, env)
    mined = run_mining_tasks(mine_request, str(plan.mine_dir), params)
    if mined["status"] == "nothing_memorized":
        queue.audit("nothing_memorized", request_id, detail={"anchor": record["anchor"]})
        request_ops.close_run(plan, "nothing_memorized")
        return plan, mined, {**base, "status": "nothing_memorized"}
    if not mined["validation"]["success"]:
        from lethe.supervision.validate import describe_failures

        reasons = [f"data_quality: {describe_failures(mined['validation'])}"]
        queue.audit("gate_decision", request_id, detail={"status": "rejected", "reasons": reasons})
        request_ops.close_run(plan, "rejected")
        return plan, mined, {**base, "status": REJECTED, "gate": {"passed": False, "reasons": reasons},
                             "graph_png": mined.get("graph_png")}
    return plan, mined, None


def audit_aliases(queue: RequestQueue, request_id: str, registered: dict[str, Any]) -> None:
    """Ledger events for the aliases a promotion moved."""
    if registered.get("challenger"):
        queue.audit("alias_moved", request_id, detail={"alias": "challenger", "model": registered["model_name"],
                                                       "version": registered["model_version"]})
    if registered["promoted"]:
        queue.audit("alias_moved", request_id, detail={"alias": "champion", "model": registered["model_name"],
                                                       "version": registered["model_version"],
                                                       "previous": registered["previous_champion"]})


def _run(params: Params, env: OpsEnv, queue: RequestQueue, record: dict, base_model: str,
         retries: int, delay: float) -> dict[str, Any]:
    request_id = record["id"]
    plan = retrying(request_ops.plan, retries, delay)(record, base_model, env, params, str(flow_run.get_id() or ""))
    plan, mined, ended = mine_supervision(params, env, queue, plan, record)
    if ended:
        return ended
    base = result_base(plan, env)
    trained = request_ops.unlearn(plan, params)
    adapter = trained["adapter_path"]
    started = time.perf_counter()
    evaluation = evaluate_request(plan, adapter, params)
    evaluation_seconds = time.perf_counter() - started
    md5s = retrying(request_ops.version, retries, delay)(plan, adapter, evaluation, env)
    queue.audit("dvc_pushed", request_id, detail={"md5": md5s, "remote": env.dvc_remote})
    registered = retrying(request_ops.register, retries, delay)(plan, adapter, evaluation, md5s, env, params)
    gate = registered["gate"]
    queue.audit("gate_decision", request_id, detail={"status": gate["status"], "reasons": gate["reasons"],
                                                     "model": registered["model_name"],
                                                     "model_version": registered["model_version"]})
    registered.update(retrying(request_ops.promote, retries, delay)(plan, registered["model_version"], env, params))
    audit_aliases(queue, request_id, registered)
    return {**base, **{k: registered[k] for k in ("model_version", "promoted", "previous_champion", "gate")},
            "status": COMPLETED if gate["passed"] else REJECTED, "adapter_path": adapter,
            "steps": trained.get("steps"), "training": training_summary(trained),
            "evaluation_seconds": evaluation_seconds,
            "before": metrics.summary(evaluation["before"]),
            "after": metrics.summary(evaluation["after"]), "reference": metrics.summary(evaluation.get("reference", {})),
            "report_path": evaluation.get("report_path"),
            "graph_png": mined.get("graph_png"), "dvc_md5": md5s,
            "mlflow_ui": version_url(env.tracking_uri, registered["model_name"], registered["model_version"])}

