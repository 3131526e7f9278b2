"""The steps of one unlearning request after mining, as plain functions (Prefect tasks wrap them).

    plan      -> which model the request starts from (the champion chain, composed), its run
    unlearn   -> the LoRA adapter (lethe.unlearn), resumable
    evaluate  -> metrics before/after on the entity, utility, MIA (lethe.evaluate)
    version   -> per-request outputs in the DVC store, pushed to S3; their md5s
    register  -> MLflow run contents, gate decision, model version with lineage, aliases

A request's files live in <registry.workdir>/<request_id>/: mine/ (MAGE), unlearn/, evaluation/.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lethe.config import Params
from lethe.errors import LetheError
from lethe.ops import registry
from lethe.ops.gate import GateDecision, decide
from lethe.ops.lineage import git_commit, model_hash, params_hash

VERSIONED = ("forget_set", "neighbor_set", "graph", "validation", "adapter", "metrics")


@dataclass
class RequestPlan:
    """Everything later steps need to know about a request; JSON-serializable for Prefect."""

    request_id: str
    anchor: str
    description: str | None
    base_model: str
    start_model: str
    model_name: str
    workdir: str
    tracking_uri: str
    run_id: str
    parent_version: str | None = None
    adapter_chain: list[str] = field(default_factory=list)
    base_utility: float | None = None
    flow_run_id: str | None = None

    @property
    def mine_dir(self) -> Path:
        return Path(self.workdir) / "mine"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def reference_utility(self, before: dict[str, Any]) -> float:
        """Utility of the original base model: inherited from the champion, else measured now."""
        return self.base_utility if self.base_utility is not None else before["model_utility"]


def model_name_for(base_model: str | Path, prefix: str) -> str:
    """Registered model name of a target model: world models by size, others by folder name."""
    from lethe.evaluate.suite import world_record

    record = world_record(base_model)
    name = f"world-{record['size']}" if record else Path(base_model).resolve().name
    return prefix + re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")


def plan_request(params: Params, request: dict[str, Any], base_model: str, tracking_uri: str,
                 flow_run_id: str | None = None) -> RequestPlan:
    """Resolve the starting model (base + the champion's adapter chain) and open the request's run."""
    from lethe.ops.compose import compose

    cfg = params.registry
    name = model_name_for(base_model, cfg.model_prefix)
    client = registry.client(tracking_uri)
    champion = registry.alias_version(client, name, registry.CHAMPION)
    chain = json.loads(champion.tags["lineage.adapter_chain"]) if champion else []
    base_utility = float(champion.tags["gate.base_utility"]) if champion else None
    workdir = Path(cfg.workdir) / request["id"]
    start_model = compose(base_model, chain, Path(cfg.workdir) / "_composed")
    run_id = registry.start_run(client, cfg.experiment, request["id"], {
        "lethe.anchor": request["anchor"], "lethe.model_name": name,
        "lethe.parent_version": champion.version if champion else "none",
        "mlflow.runName": request["id"], "lineage.prefect_flow_run_id": flow_run_id or "none"})
    registry.log_params(client, run_id, {
        **registry.flatten("", params.model_dump(mode="json", by_alias=True, exclude={"world", "request"})),
        "request.anchor": request["anchor"], "request.base_model": str(base_model),
        "request.start_model": str(start_model)})
    return RequestPlan(request["id"], request["anchor"], request.get("description"), str(base_model),
                       str(start_model), name, str(workdir), tracking_uri, run_id,
                       champion.version if champion else None, chain, base_utility, flow_run_id)


def unlearn_step(params: Params, plan: RequestPlan) -> dict[str, Any]:
    """Train the request's adapter on its validated forget and neighbor sets (resumes if interrupted)."""
    from lethe.unlearn.run import run_unlearning

    mine = plan.mine_dir
    return run_unlearning(params, Path(plan.start_model), mine / "forget_set.jsonl", mine / "neighbor_set.jsonl",
                          None, Path(plan.workdir) / "unlearn", sage=False)


def is_benchmark_author(anchor: str, model: str | Path) -> bool:
    """True when the anchor is a TOFU author that this (world) model learned."""
    from lethe.evaluate.suite import world_record
    from lethe.supervision.baselines import author_index

    try:
        index = author_index(anchor)
    except LetheError:
        return False
    record = world_record(model)
    return record is None or index in {a["index"] for a in record["authors"]}


def evaluate_step(params: Params, plan: RequestPlan, adapter: str) -> dict[str, Any]:
    """Before (the starting model) and after (with the new adapter) on the entity and on utility."""
    from lethe.evaluate.runner import evaluate_adapter

    tofu = is_benchmark_author(plan.anchor, plan.start_model)
    return evaluate_adapter(params, Path(plan.start_model), Path(adapter), [plan.anchor] if tofu else [],
                            plan.mine_dir / "forget_set.jsonl", Path(plan.workdir) / "evaluation",
                            entity_only=not tofu)


def versioned_files(plan: RequestPlan, adapter: str, evaluation: dict[str, Any]) -> dict[str, Path]:
    """The request outputs that DVC versions, by name."""
    mine = plan.mine_dir
    return {"forget_set": mine / "forget_set.jsonl", "neighbor_set": mine / "neighbor_set.jsonl",
            "graph": mine / "graph.json", "validation": mine / "validation", "adapter": Path(adapter),
            "metrics": Path(evaluation["metrics_path"])}


def lineage_tags(params: Params, plan: RequestPlan, md5s: dict[str, str], run_id: str) -> dict[str, str]:
    """lineage.* tags of the version: code, parameters, data, model, request, orchestration."""
    tags = {
        "lineage.git_commit": git_commit(),
        "lineage.request_id": plan.request_id,
        "lineage.params_hash": params_hash(params),
        "lineage.base_model": plan.base_model,
        "lineage.base_model_hash": model_hash(plan.base_model),
        "lineage.start_model_hash": model_hash(plan.start_model),
        "lineage.parent_version": plan.parent_version or "none",
        "lineage.prefect_flow_run_id": plan.flow_run_id or "none",
        "lineage.mlflow_run_id": run_id,
    }
    tags.update({f"lineage.dvc_md5.{name}": md5 for name, md5 in md5s.items()})
    return tags


def gate_step(params: Params, plan: RequestPlan, evaluation: dict[str, Any], lineage: dict[str, str]) -> GateDecision:
    """The gate's decision for this request (pure; see lethe.ops.gate)."""
    before, after = evaluation["before"], evaluation["after"]
    validation = json.loads((plan.mine_dir / "validation" / "validation.json").read_text())
    return decide(before, after, plan.reference_utility(before), bool(validation.get("success")),
                  {k.removeprefix("lineage."): v for k, v in lineage.items()}, params.gate)


def register_step(params: Params, plan: RequestPlan, adapter: str, evaluation: dict[str, Any],
                  md5s: dict[str, str], dvc_remote: str, decision: GateDecision,
                  lineage: dict[str, str]) -> dict[str, Any]:
    """Fill the request's run, register the version (all tags in one call), move aliases.

    Idempotent: a retry or a resumed request reuses the run and the version it already made.
    """
    client = registry.client(plan.tracking_uri)
    run_id = plan.run_id
    mine, work = plan.mine_dir, Path(plan.workdir)
    before, after = evaluation["before"], evaluation["after"]
    registry.log_metrics(client, run_id, {**{f"before.{k}": v for k, v in before.items()},
                                          **{f"after.{k}": v for k, v in after.items()}})
    registry.log_datasets(run_id, [
        registry.DatasetRef(name, context, mine / f"{name}.jsonl", md5s[name], dvc_url(dvc_remote, md5s[name]))
        for name, context in (("forget_set", "forget"), ("neighbor_set", "retain"))])
    for folder, artifact_path in ((mine / "validation", "validation"), (work / "evaluation", "evaluation")):
        client.log_artifacts(run_id, str(folder), artifact_path)
    for name in ("graph.json", "graph.png", "forget_set.jsonl", "neighbor_set.jsonl", "mining_stats.json"):
        if (mine / name).is_file():
            client.log_artifact(run_id, str(mine / name), "mining")
    client.log_artifact(run_id, str(work / "unlearn" / "unlearn.json"), "unlearn")
    client.log_artifacts(run_id, adapter, "adapter")

    chain = [*plan.adapter_chain, str(Path(adapter).resolve())]
    existing = registry.find_version(client, plan.model_name, plan.request_id)
    if existing is None:
        model_info = registry.log_model(run_id, [Path(a) for a in chain], Path(plan.base_model),
                                        params.evaluate.max_new_tokens)
        tags = {**lineage, "lineage.adapter_chain": json.dumps(chain), "lethe.anchor": plan.anchor,
                "gate.status": decision.status, "gate.reasons": "; ".join(decision.reasons) or "none",
                "gate.base_utility": f"{plan.reference_utility(before):.6f}",
                **{f"gate.{c.name}": str(c.value) for c in decision.checks}}
        version = registry.register_version(client, plan.model_name, run_id, model_info, tags)
    else:
        version = existing
    promoted, previous = False, None
    if decision.passed:
        client.set_registered_model_alias(plan.model_name, registry.CHALLENGER, version.version)
        if params.gate.auto_promote:
            previous = registry.promote(client, plan.model_name, version.version)
            promoted = True
    client.set_tag(run_id, "gate.status", decision.status)
    client.set_terminated(run_id, "FINISHED")
    return {"model_name": plan.model_name, "model_version": version.version, "promoted": promoted,
            "previous_champion": previous, "mlflow_run_id": run_id, "adapter_chain": chain}


def dvc_url(remote: str, md5: str) -> str:
    """Where DVC 3 stores an object with this md5 in an S3 remote."""
    return f"{remote.rstrip('/')}/files/md5/{md5[:2]}/{md5[2:]}"
