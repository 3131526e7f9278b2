"""Prefect flow: the scheduled compliance run (see prefect.yaml and `lethe serve`).

Takes every pending request (and failed ones, which resume) from the queue, runs each through
`unlearn_request` (an agentic request through `agentic_unlearn`), then re-audits the champion
against every entity it has forgotten so far, and the live agent (agentic champion + live memory)
against every entity agentic requests removed (lethe.ops.agentic_audit, the `agent_audit_fanout`
subflow), and writes a run report (JSON + markdown, also a Prefect artifact and an MLflow run).

Requests stay serial (each trains from the champion the previous one left), or, with `batch`
(scale.batch_requests), the requests of one model are unlearned together in one adapter
(`unlearn_batch`, lethe.ops.batch). What only reads a
model fans out on a Dask cluster (`scale` in params.yaml, lethe.pipeline.scale): before the
requests run, the `mining_fanout` subflow mines every one of them from the champion the run starts
with (one `mine_ahead` task each, lethe.ops.mine_ahead); after them, the `audit_fanout` subflow runs
one `audit_entity` task per entity; in between, each request's evaluation shards fan out the same
way (lethe/pipeline/flows/evaluation.py). The run starts one cluster for all of these
(scale.shared_cluster). A worker that dies mid-task loses nothing: Dask runs the task again on
another worker.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, task, unmapped
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from lethe.config import Params, load_params
from lethe.llm.cache import ModelCache
from lethe.ops import agentic_audit, compliance, mine_ahead, registry
from lethe.ops.environment import OpsEnv
from lethe.ops.queue import AGENTIC, FAILED, PENDING, UNLEARN, RequestQueue
from lethe.pipeline.flows.agentic_unlearn import agentic_unlearn
from lethe.pipeline.flows.unlearn_batch import unlearn_batch
from lethe.pipeline.flows.unlearn_request import unlearn_request
from lethe.pipeline.scale import dask_task_runner, shared_cluster, worker_name

MAX_ATTEMPTS = 3


# Per worker process: the models a phase reads stay loaded across its tasks, keyed by the model the
# phase is about (the composed champion's folder is named by its chain's content hash); another
# champion replaces them.
_WORKER_MODELS: dict[str, ModelCache] = {}


def _worker_models(params: Params, model: str) -> ModelCache:
    if model not in _WORKER_MODELS:
        _WORKER_MODELS.clear()
        _WORKER_MODELS[model] = ModelCache(params.backend)
    return _WORKER_MODELS[model]


@task(name="plan_audit", cache_policy=NO_CACHE)
def plan_audit(base_model: str, ops: OpsEnv, params: Params) -> compliance.AuditPlan:
    """The entities the champion must still forget, their graphs and audit sets, the composed champion."""
    return compliance.plan_audit(params, ops, base_model)


@task(name="audit_entity", cache_policy=NO_CACHE)
def audit_entity(params: Params, plan: compliance.AuditPlan, entity: dict) -> dict:
    """One entity's re-elicitation and held-out recall on the champion (runs on a Dask worker)."""
    models = _worker_models(params, plan.champion_model)
    return {**compliance.audit_entity(params, plan, entity, models), "audited_by": worker_name()}


@flow(name="audit_fanout")
def audit_fanout(params: Params, plan: compliance.AuditPlan) -> list[dict]:
    """Every entity's audit at once, on the flow's task runner (Dask)."""
    futures = audit_entity.map(unmapped(params), unmapped(plan), list(plan.entities))
    return [future.result() for future in futures]


@task(name="mine_ahead", cache_policy=NO_CACHE)
def mine_request_ahead(params: Params, job: mine_ahead.MiningJob) -> dict:
    """MAGE for one queued request, from the champion the run started with (runs on a Dask worker)."""
    return {**mine_ahead.mine(params, job, _worker_models(params, job.mine_model)), "mined_by": worker_name()}


@flow(name="mining_fanout")
def mining_fanout(params: Params, jobs: list[mine_ahead.MiningJob]) -> list[dict]:
    """Every queued request's mining at once, on the flow's task runner (Dask)."""
    futures = mine_request_ahead.map(unmapped(params), jobs)
    return [future.result() for future in futures]


def mine_queue_ahead(records: list, env: OpsEnv, params: Params, queue: RequestQueue) -> list[dict]:
    """Mine the queued requests in parallel before they run (scale.mine_ahead); each outcome goes to
    the ledger. A request skipped or failed here mines by itself when it runs."""
    records = [r for r in records if r.kind == UNLEARN]  # an agentic request mines from its own base model
    if not params.scale.mine_ahead or not records:
        return []
    jobs, skipped = mine_ahead.plan_mining(params, env, records)
    rows = mining_fanout.with_options(task_runner=dask_task_runner(params.scale))(params, jobs) if jobs else []
    for row in rows:
        queue.audit("mined_ahead", row["request_id"], detail={k: v for k, v in row.items() if k != "request_id"})
    return rows + [{**s, "status": "skipped"} for s in skipped]


def audit_champion(base_model: str, env: OpsEnv, params: Params) -> dict:
    """Re-elicitation and held-out recall on the champion for every entity forgotten on this model."""
    plan = plan_audit(base_model, env, params)
    rows = audit_fanout.with_options(task_runner=dask_task_runner(params.scale))(params, plan) if plan.entities else []
    return compliance.summarize_audit(plan, rows, audit_kept(params, plan))


@task(name="audit_kept", cache_policy=NO_CACHE)
def audit_kept(params: Params, plan: compliance.AuditPlan) -> dict:
    """The champion's recognition of every entity it must keep, against the base model's."""
    return compliance.audit_kept(params, plan, ModelCache(params.backend))


@task(name="audit_agent_entity", cache_policy=NO_CACHE)
def audit_agent_entity(params: Params, plan: agentic_audit.AgenticAuditPlan, entity: dict) -> dict:
    """One entity's backflow audit on the live agent, on its own memory copy (runs on a Dask worker)."""
    return {**agentic_audit.audit_agentic_entity(params, plan, entity), "audited_by": worker_name()}


@flow(name="agent_audit_fanout")
def agent_audit_fanout(params: Params, plan: agentic_audit.AgenticAuditPlan) -> list[dict]:
    """Every agentic entity's audit at once, on the flow's task runner (Dask)."""
    futures = audit_agent_entity.map(unmapped(params), unmapped(plan), list(plan.entities))
    return [future.result() for future in futures]


def audit_agent(base_model: str, env: OpsEnv, params: Params, queue: RequestQueue) -> dict:
    """The live agent (agentic champion + live memory) against every entity agentic requests removed."""
    plan = agentic_audit.plan_agentic_audit(params, env, base_model, queue)
    runner = dask_task_runner(params.scale)
    rows = agent_audit_fanout.with_options(task_runner=runner)(params, plan) if plan.entities else []
    return agentic_audit.summarize(plan, rows)


def _outcome(state) -> dict:
    outcome = state.result(raise_on_failure=False) if state.is_completed() else None
    return outcome if isinstance(outcome, dict) else {"status": FAILED}


def run_requests(todo: list, ops: dict, params_path: str | None, batch: bool) -> list[dict]:
    """Every queued request on the model it was filed for: one after another, or (batch) the requests
    of each model together in one adapter (a model with one request runs it alone). Agentic requests
    run one by one (each changes the agent's memory)."""
    groups: dict[str, list] = {}
    for record in todo:
        groups.setdefault(record.model if batch and record.kind == UNLEARN else record.id, []).append(record)
    processed = []
    for records in groups.values():
        if records[0].kind == AGENTIC:
            outcomes = [_outcome(agentic_unlearn(records[0].id, ops, params_path, return_state=True))]
        elif len(records) > 1:
            state = unlearn_batch([r.id for r in records], records[0].model, ops, params_path, return_state=True)
            outcomes = state.result(raise_on_failure=False) if state.is_completed() else None
            outcomes = outcomes if isinstance(outcomes, list) else [{"status": FAILED}] * len(records)
        else:
            outcomes = [_outcome(unlearn_request(records[0].id, records[0].model, ops, params_path,
                                                 return_state=True))]
        processed += [{"request_id": r.id, "anchor": r.anchor, "kind": r.kind, **outcome}
                      for r, outcome in zip(records, outcomes)]
    return processed


@flow(name="compliance_run", persist_result=True)  # persisted: a deployment run's caller reads it back
def compliance_run(base_model: str, ops: dict, params_path: str | None = None,
                   batch: bool | None = None) -> dict[str, Any]:
    """Process the queue, re-audit the champion, write the report. `batch` overrides scale.batch_requests."""
    params_path = params_path or None  # a deployment templated from an unset variable passes ""
    params = load_params(params_path)
    batch = params.scale.batch_requests if batch is None else batch
    env = OpsEnv(**ops)
    queue = RequestQueue(env.queue_url)
    todo = queue.list(PENDING) + [r for r in queue.list(FAILED) if r.attempts < MAX_ATTEMPTS]
    with shared_cluster(params.scale):  # one Dask cluster for every phase: workers start once
        started = time.perf_counter()
        mined = mine_queue_ahead(todo, env, params, queue)
        mining_seconds = time.perf_counter() - started
        started = time.perf_counter()
        processed = run_requests(todo, ops, params_path, batch)
        requests_seconds = time.perf_counter() - started
        started = time.perf_counter()
        audit = audit_champion(base_model, env, params)
        agent = audit_agent(base_model, env, params, queue)
        audit_seconds = time.perf_counter() - started
    report = compliance.write_report(params.registry.compliance_dir, processed, audit, mined, agent)
    create_markdown_artifact(markdown=report.read_text(), key="compliance-report",
                             description="Requests processed and the champion's re-audit")
    queue.audit("compliance_audit", detail={
        "champion": audit["champion"], "all_forgotten": audit["all_forgotten"],
        "entities": [(r["anchor"], r["forgotten"]) for r in audit["entities"]],
        "all_kept": audit["all_kept"], "kept": {k: audit["kept"].get(k) for k in ("entities", "value", "note")},
        "agent": {"champion": agent["champion"], "all_forgotten": agent["all_forgotten"],
                  "entities": [(r["anchor"], r["forgotten"]) for r in agent["entities"]]}})
    client = registry.client(env.tracking_uri)
    run = client.create_run(registry.experiment_id(client, "lethe-compliance"),
                            tags={"lethe.champion": str(audit["champion"])}, run_name=report.parent.name)
    registry.log_metrics(client, run.info.run_id, {"entities": len(audit["entities"]),
                                                   "all_forgotten": float(audit["all_forgotten"]),
                                                   "all_kept": float(audit["all_kept"]),
                                                   "agent_entities": len(agent["entities"]),
                                                   "agent_all_forgotten": float(agent["all_forgotten"]),
                                                   "requests_processed": len(processed),
                                                   "audit_seconds": audit_seconds,
                                                   "mining_ahead_seconds": mining_seconds,
                                                   "requests_seconds": requests_seconds})
    client.log_artifacts(run.info.run_id, str(report.parent), "report")
    client.set_terminated(run.info.run_id, "FINISHED")
    return {"processed": processed, "batched": batch, "audit": audit, "agent_audit": agent,
            "report_path": str(report),
            "mlflow_run_id": run.info.run_id,
            "mined_ahead": mined, "mining_ahead_seconds": mining_seconds, "requests_seconds": requests_seconds,
            "audit_seconds": audit_seconds}
