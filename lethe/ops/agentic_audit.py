"""Re-audit the agent: does the agent as served now still forget every entity agentic requests removed?

The entities are the agentic requests on this target model that replaced the agent's memory: the
completed ones and those the gate rejected (the memory pathway is applied either way, see
lethe/pipeline/flows/agentic_unlearn.py). For each, the backflow audit (lethe.agent.audit) runs on
the live agent: the agentic champion's model (the base model with its adapter chain merged in) and
the request's live memory. The audit writes notes back as the live agent would, so it works on a
scratch copy: the live memory file is never changed.

The probes and the leak judge are those SBU judged the request on (lethe.agent.sbu.judging_probes,
entity_judge), rebuilt from the request's versioned files: its SBU report (surface forms), forget
set and pre-unlearning memory, read from its work folder or restored from the DVC remote. An entity
counts as forgotten when both leak rates are within agent.retrieval_leak_bound and
agent.generation_leak_bound; a completed request whose adapter the champion's chain no longer holds
is flagged whatever the rates say.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lethe.config import Params
from lethe.layout import RequestLayout
from lethe.ops import registry
from lethe.ops.environment import OpsEnv
from lethe.ops.queue import AGENTIC, COMPLETED, REJECTED

# A request's versioned outputs the audit reads (names as in agentic_steps.versioned_files).
_FILES = ("sbu_report", "forget_set", "memory_before")


@dataclass(frozen=True)
class AgenticAuditPlan:
    """What one re-audit of the agent covers, resolved once (registry, queue, DVC restores, the
    composed champion on disk)."""

    model_name: str
    champion: str | None
    base_model: str
    champion_model: str  # the composed agentic champion (the base model itself without one)
    in_chain: tuple[str, ...]  # request ids on the champion's parent links
    entities: tuple[dict[str, Any], ...]  # anchor, request_id, status, version, memory + _FILES paths


def agentic_records(queue, base_model: str | Path) -> list:
    """The agentic requests on `base_model` that replaced the agent's memory (completed or rejected)."""
    target = Path(base_model).resolve()
    return [record for status in (COMPLETED, REJECTED) for record in queue.list(status)
            if record.kind == AGENTIC and Path(record.model).resolve() == target
            and (record.result or {}).get("model_version")]


def _request_file(env: OpsEnv, record, name: str) -> Path:
    """A versioned output of an agentic request: its work-folder copy, else restored from DVC."""
    result = record.result or {}
    local = None
    if result.get("workdir"):
        files = RequestLayout(Path(result["workdir"]))
        local = {"sbu_report": files.sbu_report, "forget_set": files.mine.forget_set,
                 "memory_before": files.sbu_dir / "memory" / "before.db"}[name]
    return env.versioned_file(record.id, name, local)


def plan_agentic_audit(params: Params, env: OpsEnv, base_model: str | Path, queue) -> AgenticAuditPlan:
    """Find the agentic entities of a target model and materialize what their audits read."""
    from lethe.ops.agentic_steps import agentic_model_name
    from lethe.ops.compliance import champion_lineage
    from lethe.ops.compose import compose

    client = registry.client(env.tracking_uri)
    name = agentic_model_name(params, base_model)
    records = agentic_records(queue, base_model)
    lineage = champion_lineage(client, name) if records else []
    champion = lineage[-1] if lineage else None
    chain = registry.adapter_chain(champion)
    entities = tuple({"anchor": r.anchor, "request_id": r.id, "status": r.status,
                      "version": r.result["model_version"], "memory": r.memory,
                      **{f: str(_request_file(env, r, f)) for f in _FILES}} for r in records)
    champion_model = compose(base_model, chain, Path(params.registry.workdir) / "_composed")
    return AgenticAuditPlan(name, champion.version if champion else None, str(base_model), str(champion_model),
                            tuple(v.tags.get("lineage.request_id") for v in lineage), entities)


def audit_agentic_entity(params: Params, plan: AgenticAuditPlan, entity: dict[str, Any]) -> dict[str, Any]:
    """The backflow audit of one entity on the live agent (a scratch copy of its memory); the row of the
    audit table."""
    from lethe.agent.audit import backflow_audit
    from lethe.agent.memory import MemoryStore
    from lethe.agent.sbu import AgentRuntime, entity_judge, judging_probes
    from lethe.fileio import load_qa_file

    cfg = params.agent
    row = {"anchor": entity["anchor"], "request_id": entity["request_id"], "status": entity["status"],
           "version": entity["version"], "memory": entity["memory"],
           "in_champion_chain": entity["request_id"] in plan.in_chain}
    live = Path(entity["memory"] or "")
    if not live.is_file():
        return {**row, "retrieval_leak": None, "generation_leak": None, "forgotten": False,
                "note": f"the agent's live memory {live} is missing: nothing to audit"}
    forget = load_qa_file(Path(entity["forget_set"]), "forget set")
    surface = json.loads(Path(entity["sbu_report"]).read_text())["surface_forms"]
    probes, held_out = judging_probes(entity["anchor"], forget, Path(entity["memory_before"]))
    scratch = Path(params.registry.workdir) / "_agentic_audit" / f"{entity['request_id']}.db"
    scratch.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(live, scratch)
    with MemoryStore(scratch, create=False) as memory:
        digest = memory.digest()
    agent, store = AgentRuntime(params, plan.champion_model).agent(scratch, None)
    with store:
        audit = backflow_audit(agent, probes, entity_judge(surface, forget, probes, cfg.leak_rouge))
    forgotten = audit.retrieval <= cfg.retrieval_leak_bound and audit.generation <= cfg.generation_leak_bound
    return {**row, "retrieval_leak": audit.retrieval, "generation_leak": audit.generation, "probes": audit.probes,
            "held_out": held_out, "memory_digest": digest, "forgotten": forgotten}


def summarize(plan: AgenticAuditPlan, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The agent's re-audit: its rows, and whether every entity is still forgotten (a completed request
    must also still be on the champion's chain)."""
    return {"model_name": plan.model_name, "champion": plan.champion, "entities": rows,
            "all_forgotten": all(r["forgotten"] and (r["status"] != COMPLETED or r["in_champion_chain"])
                                 for r in rows)}


def audit_agent(params: Params, env: OpsEnv, base_model: str | Path, queue) -> dict[str, Any]:
    """One row per entity agentic requests removed from the agent of `base_model`, one after another in
    this process (the compliance flow fans them out on Dask)."""
    plan = plan_agentic_audit(params, env, base_model, queue)
    return summarize(plan, [audit_agentic_entity(params, plan, entity) for entity in plan.entities])
