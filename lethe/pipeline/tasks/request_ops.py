"""Prefect tasks of an unlearning request after mining (thin wrappers over lethe.ops.request_steps).

Training and registry side effects are never cached (NO_CACHE); evaluation is cached on the
hashes of the files it reads, which is safe because it is a pure function of them. Tasks take typed
objects (the Params the flow loaded once, the RequestPlan, the OpsEnv), never a params file to re-read.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from lethe.config import Params
from lethe.ops import request_steps as steps
from lethe.ops.environment import OpsEnv
from lethe.ops.gate import decision_table
from lethe.ops.lineage import model_hash
from lethe.ops.request_steps import RequestPlan


def _hash_tree(path: Path) -> str:
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        digest.update(file.name.encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def evaluation_cache_key(context: Any, parameters: dict[str, Any]) -> str:
    """Key of an evaluation: model, adapter, forget set, evaluation parameters, output folder."""
    plan, params = parameters["plan"], parameters["params"]
    parts = [model_hash(plan.start_model), _hash_tree(Path(parameters["adapter"])),
             *(_hash_tree(path) for path in (plan.mine.forget_set, plan.mine.dev_set, plan.mine.audit_set)),
             plan.workdir, json.dumps([params.evaluate.model_dump(mode="json"), params.audit.model_dump(mode="json")],
                                      sort_keys=True)]
    return "evaluate-" + hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


@task(name="plan", cache_policy=NO_CACHE)
def plan(request: dict, base_model: str, ops: OpsEnv, params: Params, flow_run_id: str | None) -> RequestPlan:
    """Starting model (champion chain) and the request's MLflow run."""
    return steps.plan_request(params, request, base_model, ops.tracking_uri, flow_run_id)


@task(name="unlearn", cache_policy=NO_CACHE)
def unlearn(plan: RequestPlan, params: Params) -> dict:
    """Train the LoRA adapter (resumes from its last checkpoint after a crash)."""
    result = steps.unlearn_step(params, plan)
    return {k: v for k, v in result.items() if k not in ("curves",)}


@task(name="evaluate", cache_key_fn=evaluation_cache_key, persist_result=True)
def evaluate(plan: RequestPlan, adapter: str, params: Params, shards: dict | None = None) -> dict:
    """Before/after metrics of the request's entity, utility, probes and MIA, and the audit (from
    `shards` where they were measured on Dask workers)."""
    return steps.evaluate_step(params, plan, adapter, shards)


@task(name="evaluation_shard", cache_policy=NO_CACHE)
def evaluation_shard(params: Params, plan: RequestPlan, adapter: str, name: str) -> dict:
    """One independent part of a request's evaluation: the suite, or one model's audit (on a Dask worker)."""
    from lethe.pipeline.scale import worker_name

    return {**steps.evaluation_shard(params, plan, adapter, name), steps.MEASURED_BY: worker_name()}


@task(name="version", cache_policy=NO_CACHE)
def version(plan: RequestPlan, adapter: str, evaluation: dict, ops: OpsEnv) -> dict:
    """DVC-version the request's outputs and push them to the S3 remote; name -> md5."""
    return ops.store().version(plan.request_id, steps.versioned_files(plan, adapter, evaluation))


@task(name="register", cache_policy=NO_CACHE)
def register(plan: RequestPlan, adapter: str, evaluation: dict, md5s: dict, ops: OpsEnv, params: Params) -> dict:
    """Gate, then MLflow run contents + model version with lineage + aliases; Prefect artifacts."""
    lineage = steps.request_lineage(params, plan, md5s)
    decision = steps.gate_step(params, plan, evaluation, lineage)
    key = plan.request_id.lower()
    create_table_artifact(table=decision_table(decision), key=f"gate-{key}",
                          description=f"Gate decision for {plan.request_id}: {decision.status}")
    validation = json.loads(plan.mine.validation.read_text())
    create_markdown_artifact(markdown=data_quality_markdown(validation), key=f"data-quality-{key}",
                             description="Great Expectations checkpoints of the forget and neighbor sets")
    result = steps.register_step(params, plan, adapter, evaluation, md5s, ops.dvc_remote, decision, lineage)
    return {**result, "gate": decision.to_dict(), "lineage": lineage}


@task(name="promote", cache_policy=NO_CACHE)
def promote(plan: RequestPlan, version: str, ops: OpsEnv, params: Params) -> dict:
    """Challenger / champion aliases from the ledger's gate verdict, if the champion did not move."""
    from lethe.ops.queue import RequestQueue

    verdict = RequestQueue(ops.queue_url).gate_verdict(plan.model_name, version)
    return steps.promote_step(params, plan, version, verdict)


@task(name="close_run", cache_policy=NO_CACHE)
def close_run(plan: RequestPlan, status: str) -> None:
    """End the request's MLflow run when it stops before registration (nothing memorized, data quality)."""
    from lethe.ops import registry

    client = registry.client(plan.tracking_uri)
    client.set_tag(plan.run_id, "gate.status", status)
    client.set_terminated(plan.run_id, "FINISHED")


def data_quality_markdown(validation: dict) -> str:
    """The GX outcome as a markdown table."""
    lines = ["| set | success | rows | expectations | failed |", "|---|---|---|---|---|"]
    for name, outcome in validation.get("sets", {}).items():
        lines.append(f"| {name} | {outcome['success']} | {outcome.get('rows')} | {outcome.get('evaluated')} | "
                     f"{', '.join(str(f) for f in outcome.get('failed', [])) or '-'} |")
    return "\n".join(lines)


@task(name="plan_batch", cache_policy=NO_CACHE)
def plan_batch(members: list[RequestPlan], params: Params) -> RequestPlan:
    """The batch's run and folder, and its merged supervision (lethe.ops.batch)."""
    from lethe.ops import batch as batch_ops

    plan_ = batch_ops.plan_batch(params, members)
    batch_ops.merge_supervision(members, plan_.mine)
    return plan_


@task(name="version_batch", cache_policy=NO_CACHE)
def version_batch(batch: RequestPlan, adapter: str, evaluation: dict, ops: OpsEnv) -> dict:
    """DVC-version the batch's merged sets, adapter and metrics; name -> md5."""
    from lethe.ops.batch import versioned_batch_files

    return ops.store().version(batch.request_id, versioned_batch_files(batch, adapter, evaluation))


@task(name="register_batch", cache_policy=NO_CACHE)
def register_batch(batch: RequestPlan, members: list[RequestPlan], adapter: str, evaluations: dict,
                   evaluation: dict, md5s: dict, member_md5s: dict, ops: OpsEnv, params: Params) -> dict:
    """One gate (a forgetting row per entity), one model version on the batch's run, members' runs closed."""
    from lethe.ops import batch as batch_ops

    lineage = batch_ops.batch_lineage(params, batch, members, md5s, member_md5s)
    decision = batch_ops.gate_batch(params, batch, members, evaluations, lineage)
    key = batch.request_id.lower()
    create_table_artifact(table=decision_table(decision), key=f"gate-{key}",
                          description=f"Gate decision for {batch.request_id} ({batch.anchor}): {decision.status}")
    create_markdown_artifact(markdown=data_quality_markdown(json.loads(batch.mine.validation.read_text())),
                             key=f"data-quality-{key}", description="Great Expectations checkpoints of every member")
    result = steps.register_step(params, batch, adapter, evaluation, md5s, ops.dvc_remote, decision, lineage,
                                 extra_tags=batch_ops.batch_tags(batch, members))
    for member in members:
        batch_ops.log_member_run(member, evaluations[member.request_id], batch, result["model_version"], decision)
    return {**result, "gate": decision.to_dict(), "lineage": lineage}
