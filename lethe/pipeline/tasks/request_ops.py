"""Prefect tasks of an unlearning request after mining (thin wrappers over lethe.ops.request_steps).

Training and registry side effects are never cached (NO_CACHE); evaluation is cached on the
hashes of the files it reads, which is safe because it is a pure function of them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from lethe.config import load_params
from lethe.ops import request_steps as steps
from lethe.ops.environment import OpsEnv
from lethe.ops.gate import decision_table
from lethe.ops.lineage import model_hash


def _hash_tree(path: Path) -> str:
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        digest.update(file.name.encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def evaluation_cache_key(context: Any, parameters: dict[str, Any]) -> str:
    """Key of an evaluation: model, adapter, forget set, evaluation parameters, output folder."""
    plan = steps.RequestPlan(**parameters["plan"])
    params = load_params(parameters.get("params_path"))
    parts = [model_hash(plan.start_model), _hash_tree(Path(parameters["adapter"])),
             *(_hash_tree(plan.mine_dir / f"{name}.jsonl") for name in ("forget_set", "dev_set", "audit_set")),
             plan.workdir, json.dumps([params.evaluate.model_dump(mode="json"), params.audit.model_dump(mode="json")],
                                      sort_keys=True)]
    return "evaluate-" + hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


@task(name="plan", cache_policy=NO_CACHE)
def plan(request: dict, base_model: str, ops: dict, params_path: str | None, flow_run_id: str | None) -> dict:
    """Starting model (champion chain) and the request's MLflow run."""
    return steps.plan_request(load_params(params_path), request, base_model, ops["tracking_uri"],
                              flow_run_id).to_dict()


@task(name="unlearn", cache_policy=NO_CACHE)
def unlearn(plan: dict, params_path: str | None) -> dict:
    """Train the LoRA adapter (resumes from its last checkpoint after a crash)."""
    result = steps.unlearn_step(load_params(params_path), steps.RequestPlan(**plan))
    return {k: v for k, v in result.items() if k not in ("curves",)}


@task(name="evaluate", cache_key_fn=evaluation_cache_key, persist_result=True)
def evaluate(plan: dict, adapter: str, params_path: str | None) -> dict:
    """Before/after metrics of the request's entity, utility, probes and MIA, and the audit."""
    return steps.evaluate_step(load_params(params_path), steps.RequestPlan(**plan), adapter)


@task(name="version", cache_policy=NO_CACHE)
def version(plan: dict, adapter: str, evaluation: dict, ops: dict) -> dict:
    """DVC-version the request's outputs and push them to the S3 remote; name -> md5."""
    request_plan = steps.RequestPlan(**plan)
    return OpsEnv(**ops).store().version(request_plan.request_id,
                                         steps.versioned_files(request_plan, adapter, evaluation))


@task(name="register", cache_policy=NO_CACHE)
def register(plan: dict, adapter: str, evaluation: dict, md5s: dict, ops: dict, params_path: str | None) -> dict:
    """Gate, then MLflow run contents + model version with lineage + aliases; Prefect artifacts."""
    params = load_params(params_path)
    request_plan = steps.RequestPlan(**plan)
    lineage = steps.lineage_tags(params, request_plan, md5s, request_plan.run_id)
    decision = steps.gate_step(params, request_plan, evaluation, lineage)
    key = request_plan.request_id.lower()
    create_table_artifact(table=decision_table(decision), key=f"gate-{key}",
                          description=f"Gate decision for {request_plan.request_id}: {decision.status}")
    validation = json.loads(request_plan.mine.validation.read_text())
    create_markdown_artifact(markdown=data_quality_markdown(validation), key=f"data-quality-{key}",
                             description="Great Expectations checkpoints of the forget and neighbor sets")
    result = steps.register_step(params, request_plan, adapter, evaluation, md5s, OpsEnv(**ops).dvc_remote,
                                 decision, lineage)
    return {**result, "gate": decision.to_dict(), "lineage": lineage}


@task(name="promote", cache_policy=NO_CACHE)
def promote(plan: dict, version: str, ops: dict, params_path: str | None) -> dict:
    """Challenger / champion aliases from the ledger's gate verdict, if the champion did not move."""
    from lethe.ops.queue import RequestQueue

    request_plan = steps.RequestPlan(**plan)
    verdict = RequestQueue(OpsEnv(**ops).queue_url).gate_verdict(request_plan.model_name, version)
    return steps.promote_step(load_params(params_path), request_plan, version, verdict)


@task(name="close_run", cache_policy=NO_CACHE)
def close_run(plan: dict, status: str) -> None:
    """End the request's MLflow run when it stops before registration (nothing memorized, data quality)."""
    from lethe.ops import registry

    client = registry.client(plan["tracking_uri"])
    client.set_tag(plan["run_id"], "gate.status", status)
    client.set_terminated(plan["run_id"], "FINISHED")


def data_quality_markdown(validation: dict) -> str:
    """The GX outcome as a markdown table."""
    lines = ["| set | success | rows | expectations | failed |", "|---|---|---|---|---|"]
    for name, outcome in validation.get("sets", {}).items():
        lines.append(f"| {name} | {outcome['success']} | {outcome.get('rows')} | {outcome.get('evaluated')} | "
                     f"{', '.join(str(f) for f in outcome.get('failed', [])) or '-'} |")
    return "\n".join(lines)
