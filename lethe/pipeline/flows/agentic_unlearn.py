"""Prefect flow: a queued agentic request (SBU). Forget one entity in the model *and* the agent's memory.

prepare -> MAGE mining (elicit ... validate) -> sbu (rounds + variants) -> version -> register -> apply.
Each request starts from the agentic champion (the base model with every promoted agentic adapter
merged in), mines and trains on it, and is promoted only while that champion has not moved.
Like every request it runs under its lease in the queue and ends completed, rejected or failed
(resumable) there, with its gate decision, alias moves and memory replacement in the audit ledger;
the agentic model's plan-to-apply section is held by a lock, so two agentic requests on one agent
never interleave their memory changes. Rerunning a request resumes it: finished mining steps and a
finished SBU report are reused, the MLflow run and model version are found by request id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from lethe.config import Params, load_params
from lethe.errors import LetheError
from lethe.layout import RequestLayout
from lethe.mage import Request
from lethe.ops import agentic_steps as steps
from lethe.ops.environment import OpsEnv
from lethe.ops.queue import AGENTIC, COMPLETED, REJECTED, RequestQueue, RequestRecord
from lethe.pipeline.flows.leased import flow_owner, queued_request, run_leased
from lethe.pipeline.flows.mine import run_mining_tasks
from lethe.pipeline.flows.unlearn_request import audit_aliases, retrying
from lethe.pipeline.tasks import agentic_ops


@flow(name="agentic_unlearn")
def agentic_unlearn(request_id: str, ops: dict, params_path: str | None = None) -> dict[str, Any]:
    """Run (or resume) one queued agentic request; returns adapter, memory and leak rates per variant."""
    params = load_params(params_path)
    env = OpsEnv(**ops)
    queue = RequestQueue(env.queue_url)
    record = queued_request(queue, request_id, AGENTIC)
    lock = f"model:{steps.agentic_model_name(params, record.model)}"
    return run_leased(queue, record, flow_owner(), lock, lambda: _run(params, env, queue, record))


def _run(params: Params, env: OpsEnv, queue: RequestQueue, record: RequestRecord) -> dict[str, Any]:
    retries, delay = params.registry.retries, params.registry.retry_delay_seconds
    plan = retrying(agentic_ops.prepare, retries, delay)(record.id, record.anchor, record.model, record.memory, env,
                                                          params, str(flow_run.get_id() or ""))
    mined = run_mining_tasks(Request(anchor=record.anchor, model_path=plan.model_path, source="mage", description=None),
                             str(RequestLayout(Path(plan.workdir)).mine_dir), params)
    if mined["status"] == "nothing_memorized":
        raise LetheError(f"the model recalls nothing about {record.anchor!r}: there is nothing to unlearn")
    if not mined["validation"]["success"]:
        from lethe.supervision.validate import describe_failures

        raise LetheError(f"the forget and neighbor sets failed validation: {describe_failures(mined['validation'])}")
    report = agentic_ops.sbu(plan, params)
    md5s = retrying(agentic_ops.version, retries, delay)(plan, report, env)
    queue.audit("dvc_pushed", record.id, detail={"md5": md5s, "remote": env.dvc_remote})
    registered = retrying(agentic_ops.register, retries, delay)(plan, report, md5s, params)
    gate = registered["gate"]
    queue.audit("gate_decision", record.id, detail={
        "status": "passed" if gate["passed"] else "rejected", "reasons": gate["reasons"], "kind": AGENTIC,
        "model": registered["model_name"], "model_version": registered["model_version"]})
    audit_aliases(queue, record.id, registered)
    # The memory pathway is applied whatever the gate says of the adapter: the entity's records leave the
    # agent's store either way (the store before is in DVC); the gate decides which adapter serves.
    live = agentic_ops.apply(plan, report)
    queue.audit("memory_replaced", record.id, detail={"memory": live, "memory_before_md5": md5s.get("memory_before"),
                                                      "memory_after_md5": md5s.get("memory_after")})
    return {**steps.result_summary(plan, report, md5s, registered, live, env.tracking_uri), "kind": AGENTIC,
            "status": COMPLETED if gate["passed"] else REJECTED}
