"""Re-audit the champion: does it still forget every entity forgotten so far?

The champion's entities are found by walking its `lineage.parent_version` links. For each, the
request's forget set (from its work directory, or restored from the DVC remote) is answered by
the original base model and by the champion; the entity counts as forgotten when the champion's
ROUGE-L recall is at most `gate.max_forget_ratio` times the base model's.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lethe.config import Params
from lethe.ops import registry
from lethe.ops.compose import compose
from lethe.ops.environment import OpsEnv
from lethe.ops.request_steps import model_name_for


def champion_lineage(client, model_name: str) -> list[Any]:
    """Versions along the champion's parent links, oldest first ([] without a champion)."""
    version = registry.alias_version(client, model_name, registry.CHAMPION)
    chain = []
    while version is not None:
        chain.append(version)
        parent = version.tags.get("lineage.parent_version", "none")
        version = client.get_model_version(model_name, parent) if parent != "none" else None
    return chain[::-1]


def _forget_pairs(params: Params, env: OpsEnv, request_id: str) -> list[tuple[str, str]]:
    from lethe.unlearn.run import load_qa_file

    path = Path(params.registry.workdir) / request_id / "mine" / "forget_set.jsonl"
    if not path.is_file():
        path = env.store().restore(request_id, "forget_set")
    return load_qa_file(path, "forget set")


def _recall(backend, pairs: list[tuple[str, str]], max_new_tokens: int) -> float:
    from lethe.evaluate.rouge import mean_rouge_l_recall

    return mean_rouge_l_recall(backend.greedy([q for q, _ in pairs], max_new_tokens), [a for _, a in pairs])


def audit_champion(params: Params, env: OpsEnv, base_model: str | Path) -> dict[str, Any]:
    """One row per forgotten entity: base vs champion recall on its forget set, and the verdict."""
    from lethe.llm.backend import Backend

    client = registry.client(env.tracking_uri)
    name = model_name_for(base_model, params.registry.model_prefix)
    versions = champion_lineage(client, name)
    if not versions:
        return {"model_name": name, "champion": None, "entities": [], "all_forgotten": True}
    champion = versions[-1]
    chain = json.loads(champion.tags["lineage.adapter_chain"])
    cfg = params.backend
    base = Backend.load(base_model, cfg.device, cfg.batch_size)
    composed = Backend.load(compose(base_model, chain, Path(params.registry.workdir) / "_composed"),
                            cfg.device, cfg.batch_size)
    rows = []
    for version in versions:
        request_id = version.tags["lineage.request_id"]
        pairs = _forget_pairs(params, env, request_id)
        base_recall = _recall(base, pairs, params.evaluate.max_new_tokens)
        now = _recall(composed, pairs, params.evaluate.max_new_tokens)
        ratio = now / base_recall if base_recall > 0 else 0.0
        rows.append({"anchor": version.tags.get("lethe.anchor"), "request_id": request_id,
                     "version": version.version, "questions": len(pairs), "base_recall": base_recall,
                     "champion_recall": now, "ratio": ratio,
                     "forgotten": ratio <= params.gate.max_forget_ratio})
    return {"model_name": name, "champion": champion.version, "entities": rows,
            "all_forgotten": all(r["forgotten"] for r in rows)}


def write_report(out_root: str | Path, processed: list[dict], audit: dict) -> Path:
    """report.json + report.md of one compliance run; returns the markdown path."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = Path(out_root) / stamp
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps({"processed": processed, "audit": audit}, indent=1, default=str))
    lines = [f"# Compliance run {stamp}", "", f"Requests processed: {len(processed)}", ""]
    lines += ["| request | anchor | status | version | promoted |", "|---|---|---|---|---|"]
    lines += [f"| {p.get('request_id')} | {p.get('anchor', '')} | {p.get('status')} | {p.get('model_version') or '-'} "
              f"| {p.get('promoted', False)} |" for p in processed]
    lines += ["", f"## Champion audit: {audit['model_name']} version {audit['champion']}", "",
              "| entity | request | base recall | champion recall | ratio | forgotten |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['anchor']} | {r['request_id']} | {r['base_recall']:.3f} | {r['champion_recall']:.3f} | "
              f"{r['ratio']:.2f} | {'yes' if r['forgotten'] else 'NO'} |" for r in audit["entities"]]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return out / "report.md"
