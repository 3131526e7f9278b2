"""Prefect flow: an agentic request (SBU). Forget one entity in the model *and* the agent's memory.

prepare -> MAGE mining (elicit ... validate) -> sbu (rounds + variants) -> version -> register -> apply.
Rerunning the same anchor on the same model resumes: finished mining steps and a finished SBU
report are reused, the MLflow run and model version are found by request id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from lethe.config import load_params
from lethe.errors import LetheError
from lethe.layout import RequestLayout
from lethe.mage import Request
from lethe.ops import agentic_steps as steps
from lethe.ops.environment import OpsEnv
from lethe.ops.queue import RequestQueue
from lethe.pipeline.flows.mine import run_mining_tasks
from lethe.pipeline.tasks import agentic_ops


@flow(name="agentic_unlearn")
def agentic_unlearn(anchor: str, base_model: str, ops: dict, memory: str | None = None,
                    params_path: str | None = None) -> dict[str, Any]:
    """Run (or resume) one agentic request; returns adapter, memory and leak rates per variant."""
    params = load_params(params_path)
    env = OpsEnv(**ops)
    retries, delay = params.registry.retries, params.registry.retry_delay_seconds
    plan = agentic_ops.prepare.with_options(retries=retries, retry_delay_seconds=delay)(
        anchor, base_model, memory, env, params, str(flow_run.get_id() or ""))
    mined = run_mining_tasks(Request(anchor=anchor, model_path=base_model, source="mage", description=None),
                             str(RequestLayout(Path(plan.workdir)).mine_dir), params)
    if mined["status"] == "nothing_memorized":
        raise LetheError(f"the model recalls nothing about {anchor!r}: there is nothing to unlearn")
    if not mined["validation"]["success"]:
        from lethe.supervision.validate import describe_failures

        raise LetheError(f"the forget and neighbor sets failed validation: {describe_failures(mined['validation'])}")
    report = agentic_ops.sbu(plan, params)
    md5s = agentic_ops.version.with_options(retries=retries, retry_delay_seconds=delay)(plan, report, env)
    registered = agentic_ops.register.with_options(retries=retries, retry_delay_seconds=delay)(
        plan, report, md5s, params)
    RequestQueue(env.queue_url).audit("gate_decision", plan.request_id, detail={
        "status": "passed" if registered["gate"]["passed"] else "rejected", "reasons": registered["gate"]["reasons"],
        "model": registered["model_name"], "model_version": registered["model_version"], "kind": "agentic"})
    live = agentic_ops.apply(plan, report)
    return steps.result_summary(plan, report, md5s, registered, live, env.tracking_uri)
