"""Re-audit the champion: does it still forget every entity forgotten so far?

The entities are every request the queue holds as `completed` for this model (and, for
completeness, every anchor on the champion's parent links): a request that was rolled back, or
whose adapter a concurrent promotion dropped, is audited too, not only what the champion says it
holds. For each, the audit that needs no training data runs on the champion:

- re-elicitation: MAGE's elicitation on the champion (fresh seed) and the share of the request's
  strong memories that come back, against the never-trained reference where one exists;
- held-out probes: recall on the request's audit set (never trained on), champion vs base model.

An entity counts as forgotten when both pass the gate's thresholds, the held-out probes on at least
`gate.min_heldout_probes` of them. A completed request whose
adapter the champion's chain does not hold is flagged whatever the measurements say (the forgetting
the request promised is no longer what is served), so `all_forgotten` needs both. The graph and
audit set come from the request's work directory, or are restored from the DVC remote.

The other side is audited too: every entity the model must keep (a world model's authors, or
`unlearn.entity_retain_names`), none of the forgotten ones, must still be recognized by the champion
as the gate requires of each request (lethe.evaluate.recognition, `gate.min_entity_recognition` of
the base model's share): `all_kept`. Damage that builds up over a chain of requests shows here even
when each request passed its own gate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lethe.config import Params
from lethe.evaluate import metrics as M
from lethe.evaluate.floor import blind_at_floor, forgotten, probes_separate, reelicit_limit, too_few_probes
from lethe.evaluate.metrics import REELICIT_RETURN
from lethe.layout import MineLayout, RequestLayout
from lethe.llm.cache import ModelCache
from lethe.ops import registry
from lethe.ops.compose import compose
from lethe.ops.environment import OpsEnv
from lethe.ops.queue import UNLEARN
from lethe.ops.request_steps import model_name_for, reference_model_for


def champion_lineage(client, model_name: str) -> list[Any]:
    """Versions along the champion's parent links, oldest first ([] without a champion)."""
    version = registry.alias_version(client, model_name, registry.CHAMPION)
    chain = []
    while version is not None:
        chain.append(version)
        parent = version.tags.get("lineage.parent_version", "none")
        version = client.get_model_version(model_name, parent) if parent != "none" else None
    return chain[::-1]


def _mining_file(env: OpsEnv, request_id: str, mine_dir: Path | None, role: str) -> Path:
    """A mining output of a request (MineLayout's `role`): local, else from the DVC remote."""
    return env.versioned_file(request_id, role, getattr(MineLayout(mine_dir), role) if mine_dir is not None else None)


def audited_entities(lineage: list[Any], base_model: str | Path, queue) -> list[dict[str, Any]]:
    """(anchor, request id, mining folder) of every completed request for this model and of every
    anchor on the champion's parent links (`lineage`, from champion_lineage)."""
    entities: dict[str, dict[str, Any]] = {}
    for record in queue.list("completed"):
        result = record.result or {}
        if (record.kind != UNLEARN or Path(record.model).resolve() != Path(base_model).resolve()
                or not result.get("model_version")):  # an agentic request: lethe.ops.agentic_audit
            continue
        entities[record.id] = {"anchor": record.anchor, "request_id": record.id,
                               "version": result.get("model_version"),
                               "mine_dir": RequestLayout(Path(result["workdir"])).mine_dir if result.get("workdir") else None}
    for version in lineage:
        for request_id, anchor in version_requests(version):
            entities.setdefault(request_id, {"anchor": anchor, "request_id": request_id,
                                             "version": version.version, "mine_dir": None})
    return list(entities.values())


def version_requests(version: Any) -> list[tuple[str, str]]:
    """(request id, anchor) of every request a model version unlearned: one, or a batch's members."""
    tags = version.tags
    if "lineage.batch_request_ids" in tags:
        return list(zip(json.loads(tags["lineage.batch_request_ids"]), json.loads(tags["lineage.batch_anchors"])))
    return [(tags.get("lineage.request_id"), tags.get("lethe.anchor"))]


@dataclass(frozen=True)
class AuditPlan:
    """What one champion re-audit covers, resolved once (registry, queue, DVC restores, the composed
    champion on disk), so each entity's audit only reads local files and models and can run anywhere
    that sees this machine's files: in this process or on a Dask worker."""

    model_name: str
    champion: str | None
    base_model: str
    champion_model: str  # the composed champion's folder (the base model itself without a champion)
    in_chain: tuple[str, ...]  # request ids on the champion's parent links
    entities: tuple[dict[str, Any], ...]  # anchor, request_id, version, graph, audit_set


def plan_audit(params: Params, env: OpsEnv, base_model: str | Path, queue=None) -> AuditPlan:
    """Find the entities to audit and materialize what their audits read."""
    from lethe.ops.queue import RequestQueue

    queue = queue or RequestQueue(env.queue_url)
    client = registry.client(env.tracking_uri)
    name = model_name_for(base_model, params.registry.model_prefix)
    champion, chain = registry.champion_chain(client, name)
    lineage = champion_lineage(client, name)
    entities = []
    for entity in audited_entities(lineage, base_model, queue):
        request_id, mine_dir = entity["request_id"], entity["mine_dir"]
        entities.append({"anchor": entity["anchor"], "request_id": request_id, "version": entity["version"],
                         "graph": str(_mining_file(env, request_id, mine_dir, "graph")),
                         "audit_set": str(_mining_file(env, request_id, mine_dir, "audit_set"))})
    champion_model = (compose(base_model, chain, Path(params.registry.workdir) / "_composed") if chain and entities
                      else Path(base_model))
    return AuditPlan(name, champion.version if champion else None, str(base_model), str(champion_model),
                     tuple(request_id for v in lineage for request_id, _ in version_requests(v)), tuple(entities))


def audit_entity(params: Params, plan: AuditPlan, entity: dict[str, Any], models: ModelCache) -> dict[str, Any]:
    """Re-elicitation and held-out recall of one entity on the champion, against the base model and
    the never-trained reference where one exists; the row of the audit table."""
    from lethe.evaluate.audit import audited_graph, recall, reelicit
    from lethe.fileio import load_qa_file

    gate, tokens, anchor = params.gate, params.audit.max_new_tokens, entity["anchor"]
    graph = audited_graph(Path(entity["graph"]), plan.base_model, anchor, params)
    heldout = load_qa_file(Path(entity["audit_set"]), "audit set")
    base, current = models.get(plan.base_model), models.get(plan.champion_model)
    back = reelicit(current, anchor, graph, params)["return"]
    base_recall, now = recall(base, heldout, tokens) or 0.0, recall(current, heldout, tokens) or 0.0
    back_ref = floor = None
    reference_path = reference_model_for(anchor, plan.base_model)
    if reference_path:
        reference = models.get(reference_path)
        back_ref = reelicit(reference, anchor, graph, params)["return"]
        floor = recall(reference, heldout, tokens)
    limit = reelicit_limit(back_ref, gate)
    ratio = now / base_recall if base_recall > 0 else 0.0
    margin = gate.heldout_floor_margin
    enough = not too_few_probes(len(heldout), gate)  # the gate's floor: too few probes prove nothing
    heldout_ok = enough and (forgotten(base_recall, now, floor, margin, gate.max_heldout_ratio)
                             or blind_at_floor(base_recall, now, floor, margin))
    return {"anchor": anchor, "request_id": entity["request_id"], "version": entity["version"],
            "in_champion_chain": entity["request_id"] in plan.in_chain, "questions": len(heldout),
            "too_few_questions": not enough,
            "base_recall": base_recall, "champion_recall": now, "ratio": ratio, "reference_recall": floor,
            "heldout_separates": floor is None or probes_separate(base_recall, floor, margin),
            REELICIT_RETURN: back, "reelicit_reference": back_ref,
            "forgotten": (back is None or back <= limit) and heldout_ok}


def audit_kept(params: Params, plan: AuditPlan, models: ModelCache) -> dict[str, Any]:
    """Does the champion still recognize every entity it must keep? The gate's recognition check
    (lethe.ops.gate.recognition_check) on the champion against the base model, every audited anchor
    spared; `kept` is None where there is nothing to judge (no champion, or no other entity known).
    The base model answers through the score cache: every night asks it the same prompts."""
    from lethe.evaluate.recognition import entity_recognition, recognition_prompts
    from lethe.evaluate.suite import other_entities
    from lethe.llm.score_cache import caching, score_cache_dir
    from lethe.ops.gate import recognition_check

    spared = sorted({e["anchor"] for e in plan.entities})
    names = other_entities(plan.base_model, params.unlearn.entity_retain_names, set(spared))
    if plan.champion is None or not names:
        return {"entities": len(names), "kept": None, "value": None, "note": "no champion" if names else
                "no other entity known: list them in unlearn.entity_retain_names"}
    prompts, tokens = recognition_prompts(names, params.elicit.prompts), params.evaluate.max_new_tokens
    base_model = caching(models.get(plan.base_model), score_cache_dir(params), plan.base_model)
    base = entity_recognition(base_model, prompts, tokens)
    now = entity_recognition(models.get(plan.champion_model), prompts, tokens)
    check = recognition_check({M.ENTITY_RECOGNITION: now, M.BASE_ENTITY_RECOGNITION: base}, params.gate, spared)
    return {"entities": len(names), "kept": check.passed, "value": check.value, "note": check.note,
            "threshold": check.threshold, M.ENTITY_RECOGNITION: now, M.BASE_ENTITY_RECOGNITION: base}


def summarize_audit(plan: AuditPlan, rows: list[dict[str, Any]], kept: dict[str, Any]) -> dict[str, Any]:
    """The audit's result: its rows in the plan's order, whether every entity is still forgotten, and
    whether every entity the model must keep is still recognized (`kept`, from audit_kept)."""
    order = {e["request_id"]: i for i, e in enumerate(plan.entities)}
    rows = sorted(rows, key=lambda r: order[r["request_id"]])
    return {"model_name": plan.model_name, "champion": plan.champion, "entities": rows,
            "all_forgotten": all(r["forgotten"] and r["in_champion_chain"] for r in rows),
            "kept": kept, "all_kept": kept["kept"] is not False}


def audit_champion(params: Params, env: OpsEnv, base_model: str | Path, queue=None) -> dict[str, Any]:
    """One row per forgotten entity: re-elicitation and held-out recall on the champion, and the
    verdict; every entity in this process, one after another (the compliance flow fans them out);
    then the entities it must keep (audit_kept)."""
    plan = plan_audit(params, env, base_model, queue)
    models = ModelCache(params.backend)
    rows = [audit_entity(params, plan, entity, models) for entity in plan.entities]
    return summarize_audit(plan, rows, audit_kept(params, plan, models))


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def write_report(out_root: str | Path, processed: list[dict], audit: dict, mined: list[dict] | None = None,
                 agent_audit: dict | None = None) -> Path:
    """report.json + report.md of one compliance run (`mined`: its mining ahead, lethe.ops.mine_ahead;
    `agent_audit`: the agent's re-audit, lethe.ops.agentic_audit); returns the markdown path."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = Path(out_root) / stamp
    out.mkdir(parents=True, exist_ok=True)
    mined = mined or []
    (out / "report.json").write_text(json.dumps({"processed": processed, "mined_ahead": mined, "audit": audit,
                                                 "agent_audit": agent_audit}, indent=1, default=str))
    lines = [f"# Compliance run {stamp}", "", f"Requests processed: {len(processed)}", ""]
    if mined:
        outcomes = ", ".join(f"{m.get('anchor', m['request_id'])}: {m['status']}" for m in mined)
        lines += [f"Mined ahead, from the champion the run began with: {outcomes}", ""]
    lines += ["| request | kind | anchor | status | model | version | promoted | batch |",
              "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {p.get('request_id')} | {p.get('kind', 'unlearn')} | {p.get('anchor', '')} | {p.get('status')} "
              f"| {p.get('model_name') or '-'} | {p.get('model_version') or '-'} | {p.get('promoted', False)} "
              f"| {p.get('batch_id') or '-'} |" for p in processed]
    lines += ["", f"## Champion audit: {audit['model_name']} version {audit['champion']}", "",
              "| entity | request | in champion chain | held-out recall base -> champion | re-elicited (reference) "
              "| forgotten |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['anchor']} | {r['request_id']} | {'yes' if r['in_champion_chain'] else 'NO'} | "
              f"{r['base_recall']:.3f} -> {r['champion_recall']:.3f} on {r['questions']}"
              f"{' (too few to judge)' if r.get('too_few_questions') else ''} | {_fmt(r[REELICIT_RETURN])} "
              f"({_fmt(r['reelicit_reference'])}) | {'yes' if r['forgotten'] else 'NO'} |" for r in audit["entities"]]
    kept = audit.get("kept") or {}
    if kept:
        verdict = {True: "yes", False: "NO", None: "n/a"}[kept["kept"]]
        lines += ["", f"Entities the champion must keep, still recognized: {verdict} ({kept['entities']} entities; "
                  f"weakest {_fmt(kept['value'])}x the base model's{': ' + kept['note'] if kept['note'] else ''})"]
    if agent_audit and agent_audit["entities"]:
        lines += ["", f"## Agent audit: {agent_audit['model_name']} version {agent_audit['champion']}, live memory",
                  "", "| entity | request | status | in champion chain | retrieval leak | generation leak | forgotten |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['anchor']} | {r['request_id']} | {r['status']} | {'yes' if r['in_champion_chain'] else 'no'} "
                  f"| {_fmt(r['retrieval_leak'])} | {_fmt(r['generation_leak'])} | {'yes' if r['forgotten'] else 'NO'} |"
                  for r in agent_audit["entities"]]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return out / "report.md"
