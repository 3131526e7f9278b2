"""Prefect flow: the scheduled compliance run (see prefect.yaml and `lethe serve`).

Takes every pending request (and failed ones, which resume) from the queue, runs each through
`unlearn_request`, then re-audits the champion against every entity it has forgotten so far and
writes a run report (JSON + markdown, also a Prefect artifact and an MLflow run).

Requests stay serial (each starts from the champion the previous one left). The re-audit only
reads models, so it fans out: the `audit_fanout` subflow runs one `audit_entity` task per entity on
a Dask cluster (`scale` in params.yaml, lethe.pipeline.scale). A worker that dies mid-task loses
nothing: Dask runs the task again on another worker.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, task, unmapped
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from lethe.config import Params, load_params
from lethe.ops import compliance, registry
from lethe.ops.environment import OpsEnv
from lethe.ops.queue import FAILED, PENDING, RequestQueue
from lethe.pipeline.flows.unlearn_request import unlearn_request
from lethe.pipeline.scale import dask_task_runner, worker_name

MAX_ATTEMPTS = 3


# Per worker process: the models of the champion being audited stay loaded across its tasks (the
# composed champion's folder is named by its chain's content hash); another champion replaces them.
_WORKER_MODELS: dict[str, compliance.ModelCache] = {}


@task(name="plan_audit", cache_policy=NO_CACHE)
def plan_audit(base_model: str, ops: OpsEnv, params: Params) -> compliance.AuditPlan:
    """The entities the champion must still forget, their graphs and audit sets, the composed champion."""
    return compliance.plan_audit(params, ops, base_model)


@task(name="audit_entity", cache_policy=NO_CACHE)
def audit_entity(params: Params, plan: compliance.AuditPlan, entity: dict) -> dict:
    """One entity's re-elicitation and held-out recall on the champion (runs on a Dask worker)."""
    if plan.champion_model not in _WORKER_MODELS:
        _WORKER_MODELS.clear()
        _WORKER_MODELS[plan.champion_model] = compliance.ModelCache(params.backend)
    models = _WORKER_MODELS[plan.champion_model]
    return {**compliance.audit_entity(params, plan, entity, models), "audited_by": worker_name()}


@flow(name="audit_fanout")
def audit_fanout(params: Params, plan: compliance.AuditPlan) -> list[dict]:
    """Every entity's audit at once, on the flow's task runner (Dask)."""
    futures = audit_entity.map(unmapped(params), unmapped(plan), list(plan.entities))
    return [future.result() for future in futures]


def audit_champion(base_model: str, env: OpsEnv, params: Params) -> dict:
    """Re-elicitation and held-out recall on the champion for every entity forgotten on this model."""
    plan = plan_audit(base_model, env, params)
    rows = audit_fanout.with_options(task_runner=dask_task_runner(params.scale))(params, plan) if plan.entities else []
    return compliance.summarize_audit(plan, rows)


@flow(name="compliance_run", persist_result=True)  # persisted: a deployment run's caller reads it back
def compliance_run(base_model: str, ops: dict, params_path: str | None = None) -> dict[str, Any]:
    """Process the queue, re-audit the champion, write the report."""
    params_path = params_path or None  # a deployment templated from an unset variable passes ""
    params = load_params(params_path)
    env = OpsEnv(**ops)
    queue = RequestQueue(env.queue_url)
    todo = queue.list(PENDING) + [r for r in queue.list(FAILED) if r.attempts < MAX_ATTEMPTS]
    processed = []
    for record in todo:  # each request on the model it was filed for
        state = unlearn_request(record.id, record.model, ops, params_path, return_state=True)
        outcome = state.result(raise_on_failure=False) if state.is_completed() else None
        processed.append({"request_id": record.id, "anchor": record.anchor,
                          **(outcome if isinstance(outcome, dict) else {"status": FAILED})})
    started = time.perf_counter()
    audit = audit_champion(base_model, env, params)
    audit_seconds = time.perf_counter() - started
    report = compliance.write_report(params.registry.compliance_dir, processed, audit)
    create_markdown_artifact(markdown=report.read_text(), key="compliance-report",
                             description="Requests processed and the champion's re-audit")
    queue.audit("compliance_audit", detail={"champion": audit["champion"], "all_forgotten": audit["all_forgotten"],
                                            "entities": [(r["anchor"], r["forgotten"]) for r in audit["entities"]]})
    client = registry.client(env.tracking_uri)
    run = client.create_run(registry.experiment_id(client, "lethe-compliance"),
                            tags={"lethe.champion": str(audit["champion"])}, run_name=report.parent.name)
    registry.log_metrics(client, run.info.run_id, {"entities": len(audit["entities"]),
                                                   "all_forgotten": float(audit["all_forgotten"]),
                                                   "requests_processed": len(processed),
                                                   "audit_seconds": audit_seconds})
    client.log_artifacts(run.info.run_id, str(report.parent), "report")
    client.set_terminated(run.info.run_id, "FINISHED")
    return {"processed": processed, "audit": audit, "report_path": str(report),
            "mlflow_run_id": run.info.run_id, "audit_seconds": audit_seconds}
