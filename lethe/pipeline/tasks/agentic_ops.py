"""Prefect tasks of an agentic (SBU) request (thin wrappers over lethe.ops.agentic_steps)."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from lethe.config import load_params
from lethe.ops import agentic_steps as steps
from lethe.ops.environment import OpsEnv


@task(name="prepare", cache_policy=NO_CACHE)
def prepare(anchor: str, base_model: str, memory: str | None, ops: dict, params_path: str | None,
            flow_run_id: str | None) -> dict:
    """The agent's memory (seeded if missing) and the request's MLflow run."""
    return steps.prepare(load_params(params_path), anchor, base_model, memory, ops["tracking_uri"],
                         flow_run_id).to_dict()


@task(name="sbu", cache_policy=NO_CACHE)
def sbu(plan: dict, params_path: str | None) -> dict:
    """Synchronized rounds (memory, parameters, backflow audit) and the ablation variants."""
    request_plan = steps.AgenticPlan(**plan)
    finished = steps.load_report(request_plan)
    if finished:
        return finished
    report = steps.run_sbu_step(load_params(params_path), request_plan, steps.round_logger(request_plan))
    create_table_artifact(
        table=[{"variant": v, "retrieval_leak": r["retrieval"], "generation_leak": r["generation"],
                "retain_quality": report["retain_quality"].get(v)} for v, r in report["leak_rates"].items()],
        key=f"sbu-{request_plan.request_id.lower()}"[:100],
        description=f"Leak rates of the SBU variants for {request_plan.request_id}")
    return report


@task(name="version", cache_policy=NO_CACHE)
def version(plan: dict, report: dict, ops: dict) -> dict:
    """DVC-version memory before/after, adapter, report and forget set; push to S3; name -> md5."""
    request_plan = steps.AgenticPlan(**plan)
    return OpsEnv(**ops).store().version(request_plan.request_id, steps.versioned_files(request_plan, report))


@task(name="register", cache_policy=NO_CACHE)
def register(plan: dict, report: dict, md5s: dict, params_path: str | None) -> dict[str, Any]:
    """One MLflow version holding adapter and memory snapshot; champion when SBU's gate passes."""
    return steps.register_step(load_params(params_path), steps.AgenticPlan(**plan), report, md5s)


@task(name="apply", cache_policy=NO_CACHE)
def apply(plan: dict, report: dict) -> str:
    """The agent's live memory becomes the unlearned memory."""
    return steps.apply_memory(steps.AgenticPlan(**plan), report)
