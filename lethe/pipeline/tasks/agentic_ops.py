"""Prefect tasks of an agentic (SBU) request (thin wrappers over lethe.ops.agentic_steps)."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from lethe.config import Params
from lethe.ops import agentic_steps as steps
from lethe.ops.agentic_steps import AgenticPlan
from lethe.ops.environment import OpsEnv


@task(name="prepare", cache_policy=NO_CACHE)
def prepare(request_id: str, anchor: str, base_model: str, memory: str, ops: OpsEnv, params: Params,
            flow_run_id: str | None) -> AgenticPlan:
    """The agent's memory (seeded if missing) and the request's MLflow run."""
    return steps.prepare(params, request_id, anchor, base_model, memory, ops.tracking_uri, flow_run_id)


@task(name="sbu", cache_policy=NO_CACHE)
def sbu(plan: AgenticPlan, params: Params) -> dict:
    """Synchronized rounds (memory, parameters, backflow audit) and the ablation variants."""
    finished = steps.load_report(plan)
    if finished:
        return finished
    report = steps.run_sbu_step(params, plan, steps.round_logger(plan))
    create_table_artifact(
        table=[{"variant": v, "retrieval_leak": r["retrieval"], "generation_leak": r["generation"],
                "retain_quality": report["retain_quality"].get(v)} for v, r in report["leak_rates"].items()],
        key=f"sbu-{plan.request_id.lower()}"[:100],
        description=f"Leak rates of the SBU variants for {plan.request_id}")
    return report


@task(name="version", cache_policy=NO_CACHE)
def version(plan: AgenticPlan, report: dict, ops: OpsEnv) -> dict:
    """DVC-version memory before/after, adapter, report and forget set; push to S3; name -> md5."""
    return ops.store().version(plan.request_id, steps.versioned_files(plan, report))


@task(name="register", cache_policy=NO_CACHE)
def register(plan: AgenticPlan, report: dict, md5s: dict, params: Params) -> dict[str, Any]:
    """One MLflow version holding adapter and memory snapshot; champion when SBU's gate passes."""
    return steps.register_step(params, plan, report, md5s)


@task(name="apply", cache_policy=NO_CACHE)
def apply(plan: AgenticPlan, report: dict) -> str:
    """The agent's live memory becomes the unlearned memory."""
    return steps.apply_memory(plan, report)
