"""Prefect flow: several queued requests of one model unlearned in one adapter (a batched request,
lethe.ops.batch; `lethe compliance-run --batch` or scale.batch_requests).

Each member keeps its identity: its own lease, mining, MLflow run, evaluation and ledger events, and
its own final status. A member that ends early (nothing memorized, data quality failed) ends alone;
the others train one adapter together, are gated together (a forgetting row per entity) and share
one model version. A failure leaves every member that was running `failed`, resumable: run again,
the batch re-forms from what is still to do and reuses the finished steps.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from lethe.config import Params, load_params
from lethe.evaluate import metrics
from lethe.ops import batch as batch_ops
from lethe.ops.environment import OpsEnv
from lethe.ops.queue import COMPLETED, REJECTED, RUNNING, RequestQueue
from lethe.ops.registry import version_url
from lethe.ops.request_steps import model_name_for
from lethe.pipeline.flows.evaluation import evaluate_request
from lethe.pipeline.flows.leased import (
    Heartbeat,
    claim_or_skip,
    fail_resumable,
    final_status,
    flow_owner,
)
from lethe.pipeline.flows.unlearn_request import (
    audit_aliases,
    mine_supervision,
    result_base,
    retrying,
)
from lethe.pipeline.tasks import request_ops
from lethe.unlearn.run import training_summary


@flow(name="unlearn_batch")
def unlearn_batch(request_ids: list[str], base_model: str, ops: dict, params_path: str | None = None) -> list[dict]:
    """Run (or resume) the queued requests as one batch; returns each one's result, in order."""
    params = load_params(params_path)
    env = OpsEnv(**ops)
    queue = RequestQueue(env.queue_url)
    owner = flow_owner()
    results: dict[str, dict[str, Any]] = {}
    claimed = []
    for request_id in request_ids:
        record = queue.get(request_id)
        skipped = claim_or_skip(queue, record, owner)
        if skipped is None:
            claimed.append(record.to_dict())
        else:
            results[request_id] = skipped
    if claimed:
        lock = f"model:{model_name_for(base_model, params.registry.model_prefix)}"
        try:
            with ExitStack() as beats:
                for record in claimed:
                    beats.enter_context(Heartbeat(queue, record["id"], owner, lock))
                queue.acquire_lock(lock, owner)
                try:
                    outcomes = _run_batch(params, env, queue, claimed, base_model)
                finally:
                    queue.release_lock(lock, owner)
        except BaseException as exc:  # every member still running ends resumable
            for record in claimed:
                if queue.get(record["id"]).status == RUNNING:
                    fail_resumable(queue, record["id"], owner, exc)
            raise
        for request_id, result in outcomes.items():
            queue.transition(request_id, final_status(result), actor=owner, result=result,
                             detail={"outcome": result["status"], "batch_id": result.get("batch_id")})
            results[request_id] = result
    return [results[request_id] for request_id in request_ids]


def _run_batch(params: Params, env: OpsEnv, queue: RequestQueue, records: list[dict],
               base_model: str) -> dict[str, dict[str, Any]]:
    retries, delay = params.registry.retries, params.registry.retry_delay_seconds
    flow_run_id = str(flow_run.get_id() or "")
    outcomes: dict[str, dict[str, Any]] = {}
    members, mined = [], {}
    for record in records:
        plan = retrying(request_ops.plan, retries, delay)(record, base_model, env, params, flow_run_id)
        plan, mined[record["id"]], ended = mine_supervision(params, env, queue, plan, record)
        if ended:
            outcomes[record["id"]] = ended
        else:
            members.append(plan)
    if not members:
        return outcomes
    batch = retrying(request_ops.plan_batch, retries, delay)(members, params)
    ids = [m.request_id for m in members]
    for member in members:
        queue.audit("batch_formed", member.request_id, detail={"batch_id": batch.request_id, "members": ids})
    trained = request_ops.unlearn(batch, batch_ops.batch_params(params, len(members)))
    adapter = trained["adapter_path"]
    evaluations = {m.request_id: evaluate_request(m, adapter, params) for m in members}
    member_md5s = {m.request_id: retrying(request_ops.version, retries, delay)(m, adapter, evaluations[m.request_id],
                                                                                env) for m in members}
    evaluation = batch_ops.batch_evaluation(batch, members, evaluations)
    md5s = retrying(request_ops.version_batch, retries, delay)(batch, adapter, evaluation, env)
    for member in members:
        queue.audit("dvc_pushed", member.request_id, detail={"md5": member_md5s[member.request_id],
                                                              "batch_md5": md5s, "remote": env.dvc_remote})
    registered = retrying(request_ops.register_batch, retries, delay)(batch, members, adapter, evaluations, evaluation,
                                                                      md5s, member_md5s, env, params)
    gate = registered["gate"]
    for member in members:
        queue.audit("gate_decision", member.request_id, detail={
            "status": gate["status"], "reasons": gate["reasons"], "model": registered["model_name"],
            "model_version": registered["model_version"], "batch_id": batch.request_id})
    registered.update(retrying(request_ops.promote, retries, delay)(batch, registered["model_version"], env, params))
    for member in members:
        audit_aliases(queue, member.request_id, registered)
        own = evaluations[member.request_id]
        outcomes[member.request_id] = {
            **result_base(member, env), **{k: registered[k] for k in ("model_version", "promoted",
                                                                     "previous_champion", "gate")},
            "status": COMPLETED if gate["passed"] else REJECTED, "adapter_path": adapter, "steps": trained.get("steps"),
            "training": training_summary(trained), "batch_id": batch.request_id, "batch_request_ids": ids,
            "batch_mlflow_run_id": batch.run_id,
            "before": metrics.summary(own["before"]), "after": metrics.summary(own["after"]),
            "reference": metrics.summary(own.get("reference", {})), "report_path": own.get("report_path"),
            "graph_png": mined[member.request_id].get("graph_png"), "dvc_md5": member_md5s[member.request_id],
            "mlflow_ui": version_url(env.tracking_uri, registered["model_name"], registered["model_version"])}
    return outcomes
