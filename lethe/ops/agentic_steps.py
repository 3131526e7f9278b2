"""The steps of an agentic (SBU) request as plain functions; lethe/pipeline/flows/agentic_unlearn.py wraps them.

    prepare   -> the agent's memory (seeded when the model has none), the starting model (the base model
                 with the agentic champion's adapter chain merged in), the request's MLflow run
    sbu       -> synchronized rounds + ablation variants (lethe.agent.sbu), rounds logged live
    version   -> memory before/after, adapter and report in the DVC store, pushed to S3
    register  -> one MLflow model version holding the adapter *and* the memory snapshot
    apply     -> the agent's live memory becomes the unlearned one (before-version kept in DVC)

Agentic requests chain like weights requests, on their own registered model
(<prefix>agentic-<model>): each starts from the agentic champion, so the entities earlier agentic
requests removed stay removed from the parameters the agent serves. A request's files live in
<registry.workdir>/<request_id>/from-<chain>/: mine/ (MAGE) and sbu/.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lethe.config import Params
from lethe.layout import RequestLayout
from lethe.ops import registry
from lethe.ops.gate import decide_agentic, decision_markdown, decision_tags
from lethe.ops.lineage import lineage_tags
from lethe.ops.request_steps import model_name_for

EXPERIMENT = "lethe-agentic"
MEMORY_FILE = "memory.db"


@dataclass
class AgenticPlan:
    """What the later steps need (JSON-serializable for Prefect)."""

    request_id: str
    anchor: str
    base_model: str
    memory_path: str
    model_name: str
    workdir: str
    tracking_uri: str
    run_id: str
    flow_run_id: str | None = None
    start_model: str = ""  # base_model with the champion's adapter chain merged in ("" = base_model)
    parent_version: str | None = None  # the agentic champion this request started from
    adapter_chain: list[str] = field(default_factory=list)  # that champion's adapters, oldest first

    @property
    def model_path(self) -> str:
        """The model this request mines and trains on: the starting model."""
        return self.start_model or self.base_model

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def memory_path_for(params: Params, model_path: str | Path) -> Path:
    """The agent's live memory of a target model: <agent.memory_dir>/<model name>/memory.db."""
    return Path(params.agent.memory_dir) / model_name_for(model_path, "") / MEMORY_FILE


def ensure_memory(params: Params, model_path: str | Path, memory: Path) -> dict[str, Any]:
    """Seed the memory when there is none yet; returns its stats and whether it was seeded now."""
    from lethe.agent.memory import MemoryStore
    from lethe.agent.seed import seed_authors, seed_memory

    seeded = not memory.is_file()
    with MemoryStore(memory) as store:
        if seeded or not store.items():
            cfg = params.agent
            seed_memory(store, seed_authors(params, model_path), cfg.seed_records_per_author, cfg.seed_group_size,
                        cfg.seed)
            seeded = True
        return {**store.stats(), "seeded_now": seeded, "path": str(memory)}


def agentic_model_name(params: Params, base_model: str | Path) -> str:
    """The registered model of a target model's agentic versions (adapter + memory snapshot)."""
    return model_name_for(base_model, params.registry.model_prefix + "agentic-")


def starting_point(client, model_name: str, request_id: str) -> tuple[str | None, list[str]]:
    """(parent version, adapter chain) a request starts from: the agentic champion's, or, when the
    champion already is this request's own version (a resumed request that promoted before it
    crashed), the version it started from."""
    champion, chain = registry.champion_chain(client, model_name)
    if champion is None:
        return None, []
    if champion.tags.get("lineage.request_id") == request_id:
        parent = champion.tags.get("lineage.parent_version", "none")
        return (None if parent == "none" else parent), chain[:-1]
    return champion.version, chain


def prepare(params: Params, request_id: str, anchor: str, base_model: str, memory: str, tracking_uri: str,
            flow_run_id: str | None = None) -> AgenticPlan:
    """Memory (seeded if missing), the starting model (the agentic champion) and the request's MLflow
    run (found again on resume by request id)."""
    from lethe.ops.compose import compose
    from lethe.ops.request_steps import request_workdir

    memory_path = Path(memory)
    stats = ensure_memory(params, base_model, memory_path)
    name = agentic_model_name(params, base_model)
    client = registry.client(tracking_uri)
    parent_version, chain = starting_point(client, name, request_id)
    start_model = compose(base_model, chain, Path(params.registry.workdir) / "_composed")
    run_id = registry.start_run(client, EXPERIMENT, request_id, {
        "lethe.anchor": anchor, "lethe.model_name": name, "lethe.kind": "agentic (SBU)",
        "lethe.parent_version": parent_version or "none",
        "mlflow.runName": request_id, "lineage.prefect_flow_run_id": flow_run_id or "none"})
    registry.log_params(client, run_id, {
        **registry.flatten("", params.model_dump(mode="json", by_alias=True,
                                                 include={"agent", "unlearn", "elicit", "expand", "synthesize"})),
        "request.anchor": anchor, "request.base_model": str(base_model), "request.start_model": str(start_model),
        "request.memory": str(memory_path), "memory.items_before": str(stats["items"])})
    workdir = request_workdir(params.registry.workdir, request_id, chain)
    return AgenticPlan(request_id, anchor, str(base_model), str(memory_path), name, str(workdir), tracking_uri,
                       run_id, flow_run_id, str(start_model), parent_version, chain)


def round_logger(plan: AgenticPlan):
    """A callback that logs each SBU round's leak rates and costs to the request's run (step = round)."""
    client = registry.client(plan.tracking_uri)

    def log(number: int, record: dict) -> None:
        registry.log_metrics(client, plan.run_id, {f"round.{k}": float(v) for k, v in record.items()
                                                   if isinstance(v, int | float) and k != "round"}, step=number)

    return log


def run_sbu_step(params: Params, plan: AgenticPlan, on_round=None) -> dict[str, Any]:
    """The SBU protocol on the mined graph and forget/neighbor sets of the request."""
    from lethe.agent.sbu import SbuInputs, run_sbu

    files = RequestLayout(Path(plan.workdir))
    inputs = SbuInputs(plan.anchor, plan.model_path, plan.memory_path, str(files.mine.graph),
                       str(files.mine.forget_set), str(files.mine.neighbor_set), str(files.sbu_dir))
    return run_sbu(params, inputs, on_round)


def versioned_files(plan: AgenticPlan, report: dict[str, Any]) -> dict[str, Path]:
    files = RequestLayout(Path(plan.workdir))
    return {"memory_before": Path(report["memory_before_path"]), "memory_after": Path(report["memory_path"]),
            "adapter": Path(report["adapter_path"]), "sbu_report": files.sbu_report,
            "forget_set": files.mine.forget_set}


def register_step(params: Params, plan: AgenticPlan, report: dict[str, Any], md5s: dict[str, str]) -> dict[str, Any]:
    """Log the outcome, register adapter + memory snapshot as one version, promote if it passes."""
    client = registry.client(plan.tracking_uri)
    metrics = {f"{variant}.{channel}_leak": value for variant, rates in report["leak_rates"].items()
               for channel, value in rates.items()}
    metrics.update({f"retain_quality.{k}": v for k, v in report["retain_quality"].items() if v is not None})
    if report.get("retain_quality_ratio") is not None:
        metrics["retain_quality_ratio"] = report["retain_quality_ratio"]
    metrics.update(rounds=len(report["rounds"]), total_steps=report["total_steps"], seconds=report["seconds"])
    registry.log_metrics(client, plan.run_id, metrics)
    client.log_artifact(plan.run_id, str(RequestLayout(Path(plan.workdir)).sbu_report), "sbu")
    client.log_artifact(plan.run_id, report["memory_path"], "memory_snapshot")
    decision = decide_agentic(report["leak_rates"]["sbu"], report.get("retain_quality_ratio"), params.agent,
                              params.gate)
    passed, reasons = decision.passed, decision.reasons
    chain = [*plan.adapter_chain, str(Path(report["adapter_path"]).resolve())]
    tags = {**lineage_tags(params, plan.request_id, plan.base_model, plan.run_id, plan.flow_run_id, md5s,
                           plan.model_path, plan.parent_version),
            "lineage.adapter_chain": json.dumps(chain), "lethe.anchor": plan.anchor, "lethe.kind": "agentic (SBU)",
            "memory.snapshot_artifact": f"runs:/{plan.run_id}/memory_snapshot", **decision_tags(decision),
            **{f"leak.{k}": f"{v:.4f}" for k, v in metrics.items() if k.endswith("_leak")}}
    version = registry.register_once(client, plan.model_name, plan.run_id, tags, decision_markdown(decision),
                                     lambda: registry.log_model(plan.run_id, [Path(a) for a in chain],
                                                                Path(plan.base_model), params.agent.max_new_tokens))
    previous = promote_if_unmoved(client, plan, version.version) if passed else None
    client.set_tag(plan.run_id, "gate.status", "passed" if passed else "rejected")
    client.set_terminated(plan.run_id, "FINISHED")
    return {"model_name": plan.model_name, "model_version": version.version, "promoted": passed,
            "previous_champion": previous, "gate": {"passed": passed, "reasons": reasons}}


def promote_if_unmoved(client, plan: AgenticPlan, version: str) -> str | None:
    """Make `version` the champion while the champion is still the one the request started from (a
    rollback in between means the request must re-plan); the previous champion's version."""
    from lethe.errors import LetheError

    champion = registry.alias_version(client, plan.model_name, registry.CHAMPION)
    current = champion.version if champion else None
    if current == version:  # a resumed request that promoted before it crashed
        return plan.parent_version
    if current != plan.parent_version:
        raise LetheError(f"the champion of {plan.model_name} moved from version {plan.parent_version or 'none'} to "
                         f"{current or 'none'} while this request ran; run it again to re-plan from the new champion")
    return registry.promote(client, plan.model_name, version)


def apply_memory(plan: AgenticPlan, report: dict[str, Any]) -> str:
    """Replace the agent's live memory with the unlearned one (its previous state is in DVC)."""
    live = Path(plan.memory_path)
    shutil.copy2(report["memory_path"], live)
    return str(live)


def restore_memory(store, request_id: str, which: str, live: Path) -> dict[str, Any]:
    """Bring a versioned memory back from DVC into the live memory path; its digest for checking."""
    from lethe.agent.memory import MemoryStore
    from lethe.errors import LetheError

    if which not in ("before", "after"):
        raise LetheError(f"which must be 'before' or 'after', not {which!r}")
    restored = store.restore(request_id, f"memory_{which}")
    live.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(restored, live)
    with MemoryStore(live, create=False) as memory:
        digest, stats = memory.digest(), memory.stats()
    return {"request_id": request_id, "which": which, "memory_path": str(live), "digest": digest,
            "md5": store.md5(request_id, f"memory_{which}"), **stats}


def result_summary(plan: AgenticPlan, report: dict[str, Any], md5s: dict[str, str], registered: dict[str, Any],
                   live_memory: str, tracking_uri: str) -> dict[str, Any]:
    """What `lethe agentic-forget --json` prints."""
    keys = ("leak_rates", "retain_quality", "retain_quality_ratio", "sbu_lowest", "rounds", "converged",
            "total_steps", "probes", "agent_reads_context", "seconds")
    return {"request_id": plan.request_id, "anchor": plan.anchor, "adapter_path": report["adapter_path"],
            "memory_path": live_memory, "memory_snapshot_path": report["memory_path"],
            "start_model": plan.model_path, "parent_version": plan.parent_version, "workdir": plan.workdir,
            **{k: report[k] for k in keys}, **registered, "dvc_md5": md5s, "mlflow_run_id": plan.run_id,
            "mlflow_ui": registry.version_url(tracking_uri, plan.model_name, registered["model_version"]),
            "report_path": str(RequestLayout(Path(plan.workdir)).sbu_report)}


def load_report(plan: AgenticPlan) -> dict[str, Any] | None:
    """The finished SBU report of a resumed request, if there is one."""
    path = RequestLayout(Path(plan.workdir)).sbu_report
    return json.loads(path.read_text()) if path.is_file() else None
