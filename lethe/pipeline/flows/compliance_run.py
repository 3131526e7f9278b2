"""Prefect flow: the scheduled compliance run (see prefect.yaml and `lethe serve`).

Takes every pending request (and failed ones, which resume) from the queue, runs each through
`unlearn_request`, then re-audits the champion against every entity it has forgotten so far and
writes a run report (JSON + markdown, also a Prefect artifact and an MLflow run).
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from lethe.config import Params, load_params
from lethe.ops import compliance, registry
from lethe.ops.environment import OpsEnv
from lethe.ops.queue import FAILED, PENDING, RequestQueue
from lethe.pipeline.flows.unlearn_request import unlearn_request

MAX_ATTEMPTS = 3


@task(name="audit_champion", cache_policy=NO_CACHE)
def audit_champion(base_model: str, ops: OpsEnv, params: Params) -> dict:
    """Re-elicitation and held-out recall on the champion for every entity forgotten on this model."""
    return compliance.audit_champion(params, ops, base_model)


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
    audit = audit_champion(base_model, env, params)
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
                                                   "requests_processed": len(processed)})
    client.log_artifacts(run.info.run_id, str(report.parent), "report")
    client.set_terminated(run.info.run_id, "FINISHED")
    return {"processed": processed, "audit": audit, "report_path": str(report),
            "mlflow_run_id": run.info.run_id}
