"""The steps of one unlearning request after mining, as plain functions (Prefect tasks wrap them).

    plan      -> which model the request starts from (the champion chain, composed), its run
    unlearn   -> the LoRA adapter (lethe.unlearn), resumable
    evaluate  -> metrics before/after on the entity, utility, MIA (lethe.evaluate)
    version   -> per-request outputs in the DVC store, pushed to S3; their md5s
    register  -> MLflow run contents, gate decision, model version with lineage, aliases

A request's files live in <registry.workdir>/<request_id>/: mine/ (MAGE), unlearn/, evaluation/.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lethe.config import Params
from lethe.errors import LetheError
from lethe.evaluate import metrics as M
from lethe.layout import MineLayout, RequestLayout
from lethe.ops import registry
from lethe.ops.gate import GateDecision, decide, decision_markdown, decision_tags
from lethe.ops.lineage import lineage_tags, model_hash
from lethe.unlearn.run import training_summary

VERSIONED = ("forget_set", "neighbor_set", "dev_set", "audit_set", "graph", "validation", "adapter", "metrics")


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
    forgotten: list[str] = field(default_factory=list)  # anchors the champion chain already forgot
    flow_run_id: str | None = None
    mined_on: str | None = None  # the model its supervision was mined from, when not start_model (mined ahead)

    @property
    def files(self) -> RequestLayout:
        """The folders and files of the request's work folder."""
        return RequestLayout(Path(self.workdir))

    @property
    def mine_dir(self) -> Path:
        return self.files.mine_dir

    @property
    def mine(self) -> MineLayout:
        """The files of the request's mining folder."""
        return self.files.mine

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def model_name_for(base_model: str | Path, prefix: str) -> str:
    """Registered model name of a target model: world models by size, others by folder name."""
    from lethe.evaluate.suite import world_record

    record = world_record(base_model)
    name = f"world-{record['size']}" if record else Path(base_model).resolve().name
    return prefix + re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")


def request_workdir(workdir_root: str | Path, request_id: str, chain: list[str]) -> Path:
    """A request's work folder when it starts from the champion made of `chain`."""
    from lethe.ops.compose import chain_key

    return Path(workdir_root) / request_id / (f"from-{chain_key(chain)}" if chain else "from-base")


def plan_request(params: Params, request: dict[str, Any], base_model: str, tracking_uri: str,
                 flow_run_id: str | None = None) -> RequestPlan:
    """Resolve the starting model (base + the champion's adapter chain) and open the request's run."""
    from lethe.llm.loading import check_model
    from lethe.ops.compose import compose

    check_model(base_model, params.backend)  # a clear failure before any work; retry once fixed
    cfg = params.registry
    name = model_name_for(base_model, cfg.model_prefix)
    client = registry.client(tracking_uri)
    champion, chain = registry.champion_chain(client, name)
    forgotten = json.loads(champion.tags.get("lineage.forgotten_anchors", "[]")) if champion else []
    start_model = compose(base_model, chain, Path(cfg.workdir) / "_composed")
    # One folder per starting model: a request that re-plans from a newer champion never reuses
    # adapters trained on the old one (its supervision only when mined ahead, see lethe.ops.mine_ahead).
    workdir = request_workdir(cfg.workdir, request["id"], chain)
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
                       champion.version if champion else None, chain, forgotten, flow_run_id)


def unlearn_step(params: Params, plan: RequestPlan) -> dict[str, Any]:
    """Train the request's adapter on its validated forget and neighbor sets (resumes if interrupted)."""
    from lethe.unlearn.run import run_unlearning

    return run_unlearning(params, Path(plan.start_model), plan.mine.forget_set, plan.mine.neighbor_set,
                          None, plan.files.unlearn_dir, sage=False,
                          reference=reference_model_for(plan.anchor, plan.base_model), forgotten=plan.forgotten)


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


def reference_model_for(anchor: str, base_model: str | Path) -> str | None:
    """A model that never knew the entity: the world's retain model when the anchor is one of the
    world's forget authors; None otherwise (the audit then reports recovery relative to before)."""
    from lethe.evaluate.suite import never_trained_reference

    return never_trained_reference(base_model, [anchor])


EVALUATION_RECORD = "evaluation.json"


def evaluate_step(params: Params, plan: RequestPlan, adapter: str,
                  shards: dict[str, dict] | None = None) -> dict[str, Any]:
    """Before (the starting model) and after (with the new adapter): the TOFU / probe / MIA suite on the
    entity and on utility, then the audit (held-out probes, re-elicitation, relearning, quantization,
    privleak) against a never-trained reference where one exists. Reports and plots are rewritten
    with the audit included.

    A resumed request whose adapter, starting model, supervision and evaluation settings are those of a
    finished evaluation reuses it (`evaluation/evaluation.json`, keyed by their hashes): a crash in
    versioning or registration does not cost the evaluation again. The result is always the JSON form,
    so a first run and a resumed one hand the gate the same values.

    `shards`: the evaluation's shards (evaluation_shard_names) already measured elsewhere (on Dask
    workers, lethe/pipeline/flows/evaluation.py); else they are measured here, one after another.
    """
    record_path = plan.files.evaluation_dir / EVALUATION_RECORD
    saved = finished_evaluation(params, plan, adapter)
    if saved is not None:
        return saved
    key = evaluation_key(params, plan, adapter)
    evaluation = json.loads(json.dumps(_evaluate_now(params, plan, adapter, shards)))
    record_path.parent.mkdir(parents=True, exist_ok=True)
    partial = record_path.with_suffix(".partial")
    partial.write_text(json.dumps({"key": key, "evaluation": evaluation}))
    partial.replace(record_path)  # whole or absent: a kill mid-write leaves no half record
    return evaluation


def finished_evaluation(params: Params, plan: RequestPlan, adapter: str) -> dict[str, Any] | None:
    """The stored evaluation of this adapter, starting model, supervision and settings, if finished."""
    saved = _saved_evaluation(plan.files.evaluation_dir / EVALUATION_RECORD)
    return saved["evaluation"] if saved.get("key") == evaluation_key(params, plan, adapter) else None


def _saved_evaluation(path: Path) -> dict[str, Any]:
    """The stored evaluation record, or {} when there is none or it cannot be read (then it is redone)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) and "evaluation" in record else {}


def evaluation_key(params: Params, plan: RequestPlan, adapter: str) -> str:
    """What an evaluation depends on: the adapter's weights, the starting model, the mined supervision
    (forget set and held-out probes) and the evaluation and audit settings."""
    mine = plan.mine
    mined = [hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
             for path in (mine.forget_set, mine.dev_set, mine.audit_set, mine.neighbor_set)]
    return hashlib.sha256(json.dumps([
        model_hash(adapter), str(plan.start_model), plan.anchor, mined, params.evaluate.model_dump(mode="json"),
        params.audit.model_dump(mode="json")], sort_keys=True).encode()).hexdigest()


SUITE_SHARD = "suite:"  # + one of lethe.evaluate.runner.SUITE_MODELS: the TOFU / probe / MIA suite
AUDIT_SHARD = "audit:"  # + one of lethe.evaluate.runner.AUDITED_MODELS
MEASURED_BY, IN_PROCESS = "_measured_by", "in-process"  # which worker measured a shard (host:pid)


def evaluation_shard_names(plan: RequestPlan) -> list[str]:
    """The independent parts of a request's evaluation: the suite on each side, and the audit of each
    model. Longest first (as measured on the world model), so that a FIFO scheduler balances them."""
    reference = ["audit:reference"] if reference_model_for(plan.anchor, plan.base_model) else []
    return ["suite:after", "suite:before", *reference, "audit:after", "audit:before"]


def _targets_and_gold(plan: RequestPlan) -> tuple[bool, list[tuple[str, str]]]:
    from lethe.data import author_qa
    from lethe.supervision.baselines import author_index

    tofu = is_benchmark_author(plan.anchor, plan.start_model)
    return tofu, [(qa.question, qa.answer) for qa in author_qa(author_index(plan.anchor))] if tofu else []


def evaluation_shard(params: Params, plan: RequestPlan, adapter: str, name: str) -> dict[str, Any]:
    """One shard of the request's evaluation (reads models only; runs anywhere that sees the files)."""
    return evaluation_shards(params, plan, adapter, [name])[name]


def evaluation_shards(params: Params, plan: RequestPlan, adapter: str, names: list[str]) -> dict[str, dict[str, Any]]:
    """Shards of the request's evaluation measured in this process; the suite's two sides share one
    model load."""
    from lethe.evaluate.runner import audit_one_model, evaluation_holdout, suite_models

    known = evaluation_shard_names(plan)
    for name in names:
        if name not in known:
            raise LetheError(f"no evaluation shard {name!r}; they are {', '.join(known)}")
    tofu, gold = _targets_and_gold(plan)
    targets, start = [plan.anchor] if tofu else [], Path(plan.start_model)
    sides = [name.removeprefix(SUITE_SHARD) for name in names if name.startswith(SUITE_SHARD)]
    measured = {SUITE_SHARD + side: result for side, result in
                (suite_models(params, start, Path(adapter), targets, plan.mine.forget_set, sides,
                              entity_only=not tofu).items() if sides else ())}
    for name in names:
        if name.startswith(AUDIT_SHARD):
            which = name.removeprefix(AUDIT_SHARD)
            holdout = (evaluation_holdout(params, start, targets, plan.mine.forget_set, entity_only=not tofu)
                       if which == "reference" else [])
            measured[name] = audit_one_model(params, start, Path(adapter), plan.anchor, plan.mine_dir, gold, holdout,
                                             reference_model_for(plan.anchor, plan.base_model), which)
    return {name: measured[name] for name in names}


def _evaluate_now(params: Params, plan: RequestPlan, adapter: str,
                  shards: dict[str, dict] | None = None) -> dict[str, Any]:
    from lethe.evaluate.audit import privleak
    from lethe.evaluate.report import public, write_report
    from lethe.evaluate.runner import combine_audit, combine_suite, heldout_probe_rows

    names = evaluation_shard_names(plan)
    shards = shards or {}
    measured = evaluation_shards(params, plan, adapter, [name for name in names if name not in shards])
    shards = {name: shards[name] if name in shards else measured[name] for name in names}
    out_dir = plan.files.evaluation_dir
    evaluation = combine_suite(shards[SUITE_SHARD + "before"], shards[SUITE_SHARD + "after"])
    audit = combine_audit({name.removeprefix(AUDIT_SHARD): result
                           for name, result in shards.items() if name.startswith(AUDIT_SHARD)})
    before = {**evaluation["before"], **public(audit["before"])}
    after = {**evaluation["after"], **public(audit["after"])}
    reference = public(audit["reference"])
    after["privleak"] = privleak(after.get("mia_min_k_auc"), reference.get("mia_min_k_auc"))
    base = base_reference(params, plan, evaluation["before"], evaluation["row_rouge"])
    after["base_entity_rouge"] = base["entity_rouge_now"]
    if after.get(M.ENTITY_RECOGNITION):
        after[M.BASE_ENTITY_RECOGNITION] = base_recognition(params, plan, before, after[M.ENTITY_RECOGNITION])
    memories = audit["after"].get("_reelicit_memories", {})
    paths = write_report(out_dir, before, after, {"targets": evaluation["targets"], "adapter": str(adapter),
                                                  "reference": reference, "reelicited_memories": memories,
                                                  "audit_rows": {"heldout": audit["heldout_rows"],
                                                                 "attack": audit["attack_rows"]},
                                                  "attack_skipped": audit["attack_skipped"],
                                                  "heldout_probes": heldout_probe_rows(audit, plan.mine.audit_set)},
                         reference=reference)
    return {"targets": evaluation["targets"], "before": before, "after": after, "reference": reference,
            "base": {k: v for k, v in base.items() if k != "row_rouge"}, **paths,
            "shards": {name: shard.get(MEASURED_BY, IN_PROCESS) for name, shard in shards.items()}}


def _base_cache_path(params: Params, base_model: str) -> Path:
    key = hashlib.sha256(json.dumps([model_hash(base_model), params.evaluate.model_dump(mode="json")],
                                    sort_keys=True).encode()).hexdigest()[:16]
    return Path(params.registry.workdir) / "_base" / f"{key}.json"


def _load_base_cache(path: Path) -> dict[str, Any]:
    """The base model's cached reference scores; empty where none is kept yet."""
    return json.loads(path.read_text()) if path.is_file() else {"row_rouge": {}}


def _save_base_cache(path: Path, cache: dict[str, Any]) -> None:
    # Requests fanned out over workers read and write this file at once: each writes a temporary file of
    # its own and renames it over the cache, so a reader never sees half a file (the last writer wins).
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as handle:
        handle.write(json.dumps(cache))
    Path(handle.name).replace(path)


def base_reference(params: Params, plan: RequestPlan, before: dict[str, Any],
                   rows: dict[str, dict[str, list]]) -> dict[str, Any]:
    """What the original base model scores: its utility and its parts, and per-row retain ROUGE, so
    that chained requests are judged against the base and not against an already eroded champion.

    Cached by base-model hash and evaluation parameters; a row the cache lacks is scored on the base
    model now (rows vary a little with the target, since the target is left out of them).
    """
    from lethe.evaluate.tofu import UTILITY_KEYS
    from lethe.rouge import rouge_l_recall

    path = _base_cache_path(params, plan.base_model)
    cache = _load_base_cache(path)
    if Path(plan.start_model).resolve() == Path(plan.base_model).resolve():
        cache.update({k: before[k] for k in (M.MODEL_UTILITY, *UTILITY_KEYS) if k in before})
        cache["row_rouge"].update(rows["before"])
    missing = {q: author for q, (author, _) in rows["after"].items() if q not in cache["row_rouge"]}
    if missing or M.MODEL_UTILITY not in cache:
        from lethe.data import load_full, load_perturbed
        from lethe.evaluate.suite import build_plan, evaluate
        from lethe.llm.score_cache import load_cached

        backend = load_cached(plan.base_model, params)
        if M.MODEL_UTILITY not in cache:
            measured = evaluate(backend, build_plan(plan.base_model, params.evaluate, entity_only=True),
                                params.evaluate.model_copy(update={"probes": False, "mia": False}), None)
            cache.update({k: measured[k] for k in (M.MODEL_UTILITY, *UTILITY_KEYS) if k in measured})
        answers_by_question = {r.question: r.answer for r in load_perturbed("retain")}
        answers_by_question.update({qa.question: qa.answer for qa in load_full()})
        questions = [q for q in missing if q in answers_by_question]
        answers = backend.greedy(questions, params.evaluate.max_new_tokens)
        for question, answer in zip(questions, answers):
            cache["row_rouge"][question] = [missing[question], rouge_l_recall(answer, answers_by_question[question])]
    _save_base_cache(path, cache)
    per_entity: dict[str, list[float]] = {}
    for question, (author, _) in rows["after"].items():
        if question in cache["row_rouge"]:
            per_entity.setdefault(author, []).append(cache["row_rouge"][question][1])
    return {**cache, "entity_rouge_now": {a: sum(v) / len(v) for a, v in sorted(per_entity.items())}}


def base_recognition(params: Params, plan: RequestPlan, before: dict[str, Any],
                     now: dict[str, float]) -> dict[str, float]:
    """The original base model's recognition of each entity in `now` (lethe.evaluate.recognition), so that
    a chained request is judged against the base, not an eroded champion. Kept in base_reference's cache
    by entity and elicitation prompt; a request from the base itself takes its `before` values."""
    from lethe.evaluate.recognition import entity_recognition, recognition_prompts

    path = _base_cache_path(params, plan.base_model)
    cache = _load_base_cache(path)
    templates = list(params.elicit.prompts)
    known = cache.get("entity_recognition", {}) if cache.get("recognition_prompts") == templates else {}
    if Path(plan.start_model).resolve() == Path(plan.base_model).resolve():
        known.update(before.get(M.ENTITY_RECOGNITION) or {})
    missing = [name for name in now if name not in known]
    if missing:
        from lethe.llm.score_cache import load_cached

        known.update(entity_recognition(load_cached(plan.base_model, params), recognition_prompts(missing, templates),
                                        params.evaluate.max_new_tokens))
    cache.update({"entity_recognition": known, "recognition_prompts": templates})
    _save_base_cache(path, cache)
    return {name: known[name] for name in now}


def versioned_files(plan: RequestPlan, adapter: str, evaluation: dict[str, Any]) -> dict[str, Path]:
    """The request outputs that DVC versions, by name."""
    mine = plan.mine
    return {"forget_set": mine.forget_set, "neighbor_set": mine.neighbor_set, "dev_set": mine.dev_set,
            "audit_set": mine.audit_set, "graph": mine.graph, "validation": mine.validation_dir, "adapter": Path(adapter),
            "metrics": Path(evaluation["metrics_path"])}


def request_lineage(params: Params, plan: RequestPlan, md5s: dict[str, str]) -> dict[str, str]:
    """The version's lineage.* tags (lethe.ops.lineage.lineage_tags, shared with agentic requests)."""
    return {**lineage_tags(params, plan.request_id, plan.base_model, plan.run_id, plan.flow_run_id, md5s,
                           plan.start_model, plan.parent_version),
            "lineage.mining_model_hash": model_hash(plan.mined_on or plan.start_model)}


def gate_step(params: Params, plan: RequestPlan, evaluation: dict[str, Any], lineage: dict[str, str]) -> GateDecision:
    """The gate's decision for this request (pure; see lethe.ops.gate)."""
    validation = json.loads(plan.mine.validation.read_text())
    return decide(evaluation["before"], evaluation["after"], evaluation["base"], evaluation.get("reference", {}),
                  bool(validation.get("success")), {k.removeprefix("lineage."): v for k, v in lineage.items()},
                  params.gate, spared=[plan.anchor, *plan.forgotten])


def register_step(params: Params, plan: RequestPlan, adapter: str, evaluation: dict[str, Any],
                  md5s: dict[str, str], dvc_remote: str, decision: GateDecision,
                  lineage: dict[str, str], extra_tags: dict[str, str] | None = None) -> dict[str, Any]:
    """Fill the request's run, register the version (all tags in one call), move aliases.

    Idempotent: a retry or a resumed request reuses the run and the version it already made.
    `extra_tags` override the version's tags (a batched request's anchors, lethe.ops.batch).
    """
    client = registry.client(plan.tracking_uri)
    run_id = plan.run_id
    before, after = evaluation["before"], evaluation["after"]
    registry.log_metrics(client, run_id, {**{f"before.{k}": v for k, v in before.items()},
                                          **{f"after.{k}": v for k, v in after.items()},
                                          **{f"reference.{k}": v for k, v in evaluation.get("reference", {}).items()},
                                          **{f"base.{k}": v for k, v in evaluation.get("base", {}).items()}})
    trained = json.loads(plan.files.unlearn_report.read_text())
    for point in trained.get("budget_path", []):  # the adaptive budget's forget-vs-utility path
        registry.log_metrics(client, run_id, {f"budget.{k}": v for k, v in point.items() if k != "step"},
                             step=int(point["step"]))
    training = training_summary(trained)
    if training["saturation"]:
        registry.log_metrics(client, run_id, {"unlearn.saturated_step": training["saturation"]["step"]})
    if training["note"]:
        client.set_tag(run_id, "unlearn.note", training["note"])
    registry.log_datasets(run_id, [
        registry.DatasetRef(name, context, getattr(plan.mine, name), md5s[name], dvc_url(dvc_remote, md5s[name]))
        for name, context in (("forget_set", "forget"), ("neighbor_set", "retain"), ("audit_set", "audit"))])
    for folder, artifact_path in ((plan.mine.validation_dir, "validation"), (plan.files.evaluation_dir, "evaluation")):
        client.log_artifacts(run_id, str(folder), artifact_path)
    # The forget, neighbor and audit sets stay in the DVC remote: MLflow gets their digests (dataset inputs).
    for path in (plan.mine.graph, plan.mine.graph_png, plan.mine.mining_stats, plan.mine.synthesis):
        if path.is_file():
            client.log_artifact(run_id, str(path), "mining")
    client.log_artifact(run_id, str(plan.files.unlearn_report), "unlearn")
    client.log_artifacts(run_id, adapter, "adapter")

    chain = [*plan.adapter_chain, str(Path(adapter).resolve())]
    tags = {**lineage, "lineage.adapter_chain": json.dumps(chain), "lethe.anchor": plan.anchor,
            "lethe.kind": "unlearning request", **decision_tags(decision),
            "gate.base_utility": f"{evaluation['base'].get(M.MODEL_UTILITY, float('nan')):.6f}",
            "lineage.forgotten_anchors": json.dumps([*plan.forgotten, plan.anchor]), **(extra_tags or {})}
    version = registry.register_once(client, plan.model_name, run_id, tags, decision_markdown(decision),
                                     lambda: registry.log_model(run_id, [Path(a) for a in chain], Path(plan.base_model),
                                                                params.evaluate.max_new_tokens))
    client.set_tag(run_id, "gate.status", decision.status)
    client.set_terminated(run_id, "FINISHED")
    return {"model_name": plan.model_name, "model_version": version.version, "mlflow_run_id": run_id,
            "adapter_chain": chain}


def promote_step(params: Params, plan: RequestPlan, version: str, ledger_verdict: str | None) -> dict[str, Any]:
    """Aliases for a registered version, from the gate verdict the *ledger* holds (a version tag can be
    set by anyone who reaches the tracking server; the ledger is append-only).

    Promotes only while the champion is still the version this request planned from: otherwise the
    request fails resumable and re-plans from the new champion when run again.
    """
    client = registry.client(plan.tracking_uri)
    if ledger_verdict != "passed":
        return {"promoted": False, "challenger": False, "previous_champion": None}
    champion = registry.alias_version(client, plan.model_name, registry.CHAMPION)
    current = champion.version if champion else None
    if current != plan.parent_version:
        raise LetheError(f"the champion of {plan.model_name} moved from version {plan.parent_version or 'none'} to "
                         f"{current or 'none'} while this request ran; run it again to re-plan from the new champion")
    client.set_registered_model_alias(plan.model_name, registry.CHALLENGER, version)
    if not params.gate.auto_promote:
        return {"promoted": False, "challenger": True, "previous_champion": None}
    previous = registry.promote(client, plan.model_name, version)
    return {"promoted": True, "challenger": True, "previous_champion": previous}


def dvc_url(remote: str, md5: str) -> str:
    """Where DVC 3 stores an object with this md5 in an S3 remote."""
    return f"{remote.rstrip('/')}/files/md5/{md5[:2]}/{md5[2:]}"
