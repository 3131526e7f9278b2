"""Batched requests: several queued entities of one model unlearned in one adapter (scale.batch_requests).

Each member is mined as a single request would be, in its own request folder; then the batch

    plan      -> its own MLflow run and folder, from the members' common champion
    merge     -> one supervision: every member's training forget rows and dev probes, and their
                 neighbor rows minus those that name another target of the batch
    unlearn   -> one adapter on the merged sets, unlearn.max_steps per member
    evaluate  -> each member's own evaluation and audit (its own held-out probes) on that adapter
    gate      -> one decision, the forgetting rows once per entity (lethe.ops.gate.decide_batch)
    register  -> one model version on the batch's run; each member's run keeps its own metrics

A batch's files live in <registry.workdir>/_batches/<batch id>/from-.../ (mine/ holds the merged
sets, unlearn/ the adapter, evaluation/ every member's evaluation).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from lethe.config import Params
from lethe.errors import LetheError
from lethe.fileio import read_jsonl, write_atomic
from lethe.layout import MineLayout
from lethe.mining.extract import normalize
from lethe.ops import registry
from lethe.ops.gate import GateDecision, decide_batch
from lethe.ops.request_steps import RequestPlan, request_lineage, request_workdir

BATCH_METRICS = "batch_metrics.json"


def batch_id(request_ids: Sequence[str]) -> str:
    """The batch's identity: its members, in any order."""
    if not request_ids:
        raise LetheError("a batch needs at least one request")
    return "batch-" + hashlib.sha256(",".join(sorted(request_ids)).encode()).hexdigest()[:12]


def plan_batch(params: Params, members: Sequence[RequestPlan]) -> RequestPlan:
    """The batch as a plan of its own: the members' common starting model, its run and folder."""
    lead = members[0]
    starts = {(m.start_model, m.parent_version) for m in members}
    if len(starts) != 1:
        raise LetheError(f"the requests of a batch must start from one champion; they start from {sorted(starts)}")
    ids = [m.request_id for m in members]
    identity = batch_id(ids)
    client = registry.client(lead.tracking_uri)
    anchors = "; ".join(m.anchor for m in members)
    run_id = registry.start_run(client, params.registry.experiment, identity, {
        "lethe.anchor": anchors[:5000], "lethe.model_name": lead.model_name,
        "lethe.parent_version": lead.parent_version or "none", "mlflow.runName": identity,
        "lethe.batch_request_ids": json.dumps(ids), "lineage.prefect_flow_run_id": lead.flow_run_id or "none"})
    registry.log_params(client, run_id, {
        **registry.flatten("", params.model_dump(mode="json", by_alias=True, exclude={"world", "request"})),
        "request.base_model": lead.base_model, "request.start_model": lead.start_model,
        "batch.members": str(len(members)),
        "batch.unlearn.max_steps": str(batch_params(params, len(members)).unlearn.max_steps)})
    workdir = request_workdir(Path(params.registry.workdir) / "_batches", identity, lead.adapter_chain)
    mined_on = next((m.mined_on for m in members if m.mined_on), None)
    return replace(lead, request_id=identity, anchor=anchors, description=None, workdir=str(workdir),
                   run_id=run_id, mined_on=mined_on)


def batch_params(params: Params, members: int) -> Params:
    """The batch's training budget: unlearn.max_steps (and min_steps) per member, so that each entity
    gets the updates it would get alone (the merged forget set is that many times larger; measured on
    the tiny world, a batch of three held to one request's 80 steps left two of them 0.79-0.83x of
    their gold recall, bench/batched_vs_chained.py). The adaptive budget may still stop earlier."""
    cfg = params.unlearn
    return params.model_copy(update={"unlearn": cfg.model_copy(update={
        "max_steps": cfg.max_steps * members, "min_steps": cfg.min_steps * members})})


def names_any(row: dict[str, Any], anchors: Sequence[str]) -> bool:
    """True when a QA row's question or answer names one of `anchors` (normalized, whole name)."""
    text = normalize(f"{row.get('question', '')} {row.get('answer', '')}")
    return any(normalize(anchor) in text for anchor in anchors)


def merge_supervision(members: Sequence[RequestPlan], out: MineLayout) -> dict[str, int]:
    """Write the batch's forget, dev, audit and neighbor sets into `out` (and its validation record).

    A neighbor row of one member that names another member is dropped: the batch must not be taught
    to keep what it is asked to forget. Neighbor rows are deduplicated by question.
    """
    anchors = [m.anchor for m in members]
    merged: dict[str, list[dict[str, Any]]] = {"forget_set": [], "dev_set": [], "audit_set": [], "neighbor_set": []}
    dropped, questions = 0, set()
    for member in members:
        for name in ("forget_set", "dev_set", "audit_set"):
            path = getattr(member.mine, name)
            merged[name] += read_jsonl(path) if path.is_file() else []
        for row in read_jsonl(member.mine.neighbor_set):
            if names_any(row, anchors):
                dropped += 1
            elif row["question"] not in questions:
                questions.add(row["question"])
                merged["neighbor_set"].append(row)
    if not merged["forget_set"]:
        raise LetheError(f"the batch {', '.join(anchors)} has no forget rows to train on")
    out.root.mkdir(parents=True, exist_ok=True)
    for name, rows in merged.items():
        write_atomic(getattr(out, name), "".join(json.dumps(r) + "\n" for r in rows))
    verdicts = [(m, json.loads(m.mine.validation.read_text())) for m in members]
    out.validation_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(out.validation, json.dumps({
        "success": all(v.get("success") for _, v in verdicts),
        "members": {m.request_id: {"success": v.get("success"), "validation": str(m.mine.validation)}
                    for m, v in verdicts},
        "sets": {f"{name} ({m.anchor})": outcome for m, v in verdicts for name, outcome in v.get("sets", {}).items()}},
        indent=1))
    stats = {"forget_rows": len(merged["forget_set"]), "dev_rows": len(merged["dev_set"]),
             "audit_rows": len(merged["audit_set"]), "neighbor_rows": len(merged["neighbor_set"]),
             "neighbor_rows_dropped": dropped, "members": len(members)}
    write_atomic(out.synthesis, json.dumps({"source": "batch", **stats}, indent=1))
    return stats


def batch_evaluation(batch: RequestPlan, members: Sequence[RequestPlan],
                     evaluations: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Every member's evaluation under the batch: copied into its evaluation folder, and its metrics
    keyed `<request id>.<metric>` (the batch run's metrics)."""
    out = batch.files.evaluation_dir
    out.mkdir(parents=True, exist_ok=True)
    for member in members:
        shutil.copytree(member.files.evaluation_dir, out / member.request_id, dirs_exist_ok=True)
    merged: dict[str, dict[str, Any]] = {"before": {}, "after": {}, "reference": {}}
    for member in members:
        for part in merged:
            merged[part].update({f"{member.request_id}.{k}": v
                                 for k, v in (evaluations[member.request_id].get(part) or {}).items()})
    metrics_path = out / BATCH_METRICS
    write_atomic(metrics_path, json.dumps({"members": {m.request_id: m.anchor for m in members}, **merged},
                                          indent=1, default=str))
    lead = evaluations[members[0].request_id]
    return {**merged, "base": lead.get("base", {}), "metrics_path": str(metrics_path)}


def versioned_batch_files(batch: RequestPlan, adapter: str, evaluation: dict[str, Any]) -> dict[str, Path]:
    """What DVC versions for the batch (each member's own sets are versioned under its request)."""
    mine = batch.mine
    return {"forget_set": mine.forget_set, "neighbor_set": mine.neighbor_set, "dev_set": mine.dev_set,
            "audit_set": mine.audit_set, "validation": mine.validation_dir, "adapter": Path(adapter),
            "metrics": Path(evaluation["metrics_path"])}


def batch_lineage(params: Params, batch: RequestPlan, members: Sequence[RequestPlan], md5s: dict[str, str],
                  member_md5s: dict[str, dict[str, str]]) -> dict[str, str]:
    """The version's lineage tags: the batch's own, its members, and each member's forget-set md5."""
    return {**request_lineage(params, batch, md5s),
            "lineage.batch_request_ids": json.dumps([m.request_id for m in members]),
            **{f"lineage.member.{rid}.dvc_md5.forget_set": sums["forget_set"] for rid, sums in member_md5s.items()}}


def gate_batch(params: Params, batch: RequestPlan, members: Sequence[RequestPlan],
               evaluations: dict[str, dict[str, Any]], lineage: dict[str, str]) -> GateDecision:
    """One decision for the batch's adapter: forgetting per entity, keeping on the first member's
    evaluation (its other-entity rows spare every target of the batch and of the chain)."""
    lead = evaluations[members[0].request_id]
    validation = json.loads(batch.mine.validation.read_text())
    entities = {m.anchor: (evaluations[m.request_id]["before"], evaluations[m.request_id]["after"],
                           evaluations[m.request_id].get("reference", {})) for m in members}
    return decide_batch(entities, lead["after"], lead.get("base", {}), bool(validation.get("success")),
                        {k.removeprefix("lineage."): v for k, v in lineage.items()}, params.gate,
                        spared=[*(m.anchor for m in members), *batch.forgotten])


def batch_tags(batch: RequestPlan, members: Sequence[RequestPlan]) -> dict[str, str]:
    """Version tags that differ from a single request's: every target is now forgotten."""
    return {"lethe.kind": "batched unlearning request", "lethe.anchor": batch.anchor[:5000],
            "lineage.batch_anchors": json.dumps([m.anchor for m in members]),
            "lineage.forgotten_anchors": json.dumps([*batch.forgotten, *(m.anchor for m in members)])}


def log_member_run(member: RequestPlan, evaluation: dict[str, Any], batch: RequestPlan, version: str,
                   decision: GateDecision) -> None:
    """Close a member's own run: its metrics and evaluation, and where its model version is."""
    client = registry.client(member.tracking_uri)
    registry.log_metrics(client, member.run_id, {f"{part}.{k}": v for part in ("before", "after", "reference", "base")
                                                 for k, v in (evaluation.get(part) or {}).items()})
    client.log_artifacts(member.run_id, str(member.files.evaluation_dir), "evaluation")
    for path in (member.mine.graph, member.mine.graph_png, member.mine.mining_stats, member.mine.synthesis):
        if path.is_file():
            client.log_artifact(member.run_id, str(path), "mining")
    for key, value in {"lethe.batch_id": batch.request_id, "lethe.batch_run_id": batch.run_id,
                       "lethe.model_version": version, "gate.status": decision.status}.items():
        client.set_tag(member.run_id, key, value)
    client.set_terminated(member.run_id, "FINISHED")
