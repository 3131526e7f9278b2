"""Evaluate a base model and (optionally) the same model with an unlearning adapter."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from lethe.config import Params
from lethe.errors import LetheError
from lethe.evaluate import metrics as M
from lethe.evaluate.recognition import kept_entities, recognition_prompts
from lethe.evaluate.report import public, write_report
from lethe.evaluate.suite import build_plan, evaluate, other_entities, retain_model_ratios
from lethe.layout import MineLayout
from lethe.llm.backend import Backend
from lethe.llm.score_cache import CachingBackend, caching, score_cache_dir


def with_adapter(backend: Backend, adapter: Path) -> Backend:
    """The backend's model with a peft adapter (same tokenizer): merged into float32 weights, where
    that is exact up to float rounding and every forward then costs what the base model's does (a
    rank-8 adapter on top made the default world's greedy answers about 20% slower, a distilled
    full-rank one twice as slow); kept on top of half-precision weights, where merging would round a
    small update away.

    peft changes the base model in place: score the base model before calling this, and do not use
    the original backend afterwards.
    """
    from peft import PeftModel

    if not (adapter / "adapter_config.json").is_file():
        raise LetheError(f"no LoRA adapter at {adapter} (expected adapter_config.json)")
    if isinstance(backend, CachingBackend):
        backend.disable()  # its model changes below: what it stored stays true of the unmodified one
    model = PeftModel.from_pretrained(backend.model, adapter)
    if next(backend.model.parameters()).dtype == torch.float32:
        model = model.merge_and_unload()
    model.eval()
    return Backend(model, backend.tokenizer, backend.batch_size)


def evaluate_adapter(params: Params, model: Path, adapter: Path | None, targets, forget_set: Path | None,
                     out_dir: Path, before: dict | None = None, entity_only: bool = False) -> dict:
    """Metrics before and after; `before` may be passed in to skip re-scoring the base model."""
    plan, reference, base = _suite_setup(params, model, targets, forget_set, entity_only)
    if before is None:
        before = evaluate(base, plan, params.evaluate, reference)
    after = evaluate(with_adapter(base, adapter), plan, params.evaluate, reference) if adapter else None
    paths = write_report(out_dir, before, after, {"targets": plan.targets, "adapter": str(adapter) if adapter else None})
    rows = {"before": before.get("_row_rouge", {}), "after": (after or {}).get("_row_rouge", {})}
    return {"targets": plan.targets, "before": public(before), "after": public(after) if after else None,
            "row_rouge": rows, "holdout": [(q.question, q.answer) for q in plan.holdout], **paths}


def _suite_plan(params: Params, model: Path, targets, forget_set: Path | None, entity_only: bool):
    from lethe.fileio import load_qa_file

    pairs = load_qa_file(forget_set, "forget set") if forget_set else []
    plan = build_plan(model, params.evaluate, targets, pairs, entity_only)
    others = other_entities(model, params.unlearn.entity_retain_names, {*targets, *plan.targets})
    plan.recognition_prompts = recognition_prompts(kept_entities(others, [q for q, _ in pairs]), params.elicit.prompts)
    return plan


def _suite_setup(params: Params, model: Path, targets, forget_set: Path | None, entity_only: bool):
    """(the suite's plan, the retain model's reference ratios, the loaded starting model, its scores
    through the score cache)."""
    plan = _suite_plan(params, model, targets, forget_set, entity_only)
    cache = score_cache_dir(params)
    reference = retain_model_ratios(plan, params.backend.device, params.backend.batch_size, cache)
    return plan, reference, caching(Backend.from_params(model, params.backend), cache, model)


SUITE_MODELS = ("before", "after")


def suite_models(params: Params, model: Path, adapter: Path, targets, forget_set: Path | None,
                 which: Sequence[str], entity_only: bool = False) -> dict[str, dict]:
    """Sides of evaluate_adapter's suite: the starting model (`before`) and/or the model with the
    adapter (`after`), on one model load. A Dask worker measures one side (an evaluation shard), so
    the two can run on different workers; combine_suite joins them."""
    unknown = [side for side in which if side not in SUITE_MODELS]
    if unknown:
        raise LetheError(f"no suite model {unknown[0]!r}; they are {', '.join(SUITE_MODELS)}")
    plan, reference, base = _suite_setup(params, model, targets, forget_set, entity_only)
    measured = {}
    for side in (s for s in SUITE_MODELS if s in which):  # before first: the adapter goes on in place
        metrics = evaluate(with_adapter(base, adapter) if side == "after" else base, plan, params.evaluate, reference)
        measured[side] = {"targets": plan.targets, "metrics": public(metrics), "row_rouge": metrics.get("_row_rouge", {})}
    return measured


def combine_suite(before: dict, after: dict) -> dict:
    """evaluate_adapter's result (without its report) from the two sides suite_models measured."""
    return {"targets": before["targets"], "before": before["metrics"], "after": after["metrics"],
            "row_rouge": {"before": before["row_rouge"], "after": after["row_rouge"]}}


AUDITED_MODELS = ("before", "after", "reference")


def _audit_inputs(params: Params, mine_dir: Path, model: Path, anchor: str) -> dict:
    """What every audited model is measured on: the held-out probes, the relearning attacks (seeded, so
    every shard draws the same ones) and the memory graph of `anchor` (lethe.evaluate.audit.audited_graph;
    `model`: the starting model, whose other entities leave the graph)."""
    from lethe.evaluate.audit import attack_rows, audited_graph
    from lethe.fileio import load_qa_file

    cfg, files = params.audit, MineLayout(mine_dir)
    heldout = load_qa_file(files.audit_set, "audit set")
    if not heldout:
        raise LetheError(f"the audit set {files.audit_set} is empty: nothing was held out")
    forget = load_qa_file(files.forget_set, "forget set")
    # A mined forget set can be smaller than one attack: the request is then audited without the
    # relearning attack, and the gate's relearning row says it was not measured (and rejects).
    attack_skipped = (f"the forget set has {len(forget)} rows, one attack takes audit.relearn_rows "
                      f"{cfg.relearn_rows}" if cfg.relearn_rows > len(forget) else None)
    attacks = [] if attack_skipped else attack_rows(forget, cfg.relearn_rows, cfg.seed, cfg.relearn_attacks)
    graph = audited_graph(files.graph, model, anchor, params) if files.graph.is_file() else None
    return {"heldout": heldout, "heldout_nodes": probe_nodes(files.audit_set, len(heldout)), "attacks": attacks,
            "attack_skipped": attack_skipped, "graph": graph}


def probe_nodes(audit_set: Path, probes: int) -> list[str]:
    """The memory-graph node each held-out probe was synthesized from, in the audit set's order (the
    probe's own index where a row names none): probes of one node are one fact, for the gate's interval."""
    from lethe.fileio import read_jsonl

    rows = read_jsonl(audit_set)
    nodes = [str(row.get("node") or f"#{i}") for i, row in enumerate(rows)]
    return nodes if len(nodes) == probes else [f"#{i}" for i in range(probes)]


def audit_one_model(params: Params, model: Path, adapter: Path, anchor: str, mine_dir: Path,
                    gold: list[tuple[str, str]], holdout: list[tuple[str, str]], reference_model: str | None,
                    which: str) -> dict:
    """The audit of one of AUDITED_MODELS: `before` (the starting model: held-out recall only), `after`
    (with the adapter) or `reference` (a model that never knew the entity, with privleak's MIA); the
    last two are also re-elicited, attacked and quantized. One shard of an evaluation: each loads its
    own model, so the three can run on different workers."""
    from lethe.evaluate.audit import audit_model, load_plain
    from lethe.evaluate.mia import mia_report

    if which not in AUDITED_MODELS:
        raise LetheError(f"no audited model {which!r}; they are {', '.join(AUDITED_MODELS)}")
    if which == "reference" and not reference_model:
        raise LetheError("no reference model to audit: the entity has no never-trained reference")
    inputs, backend_cfg = _audit_inputs(params, mine_dir, model, anchor), params.backend
    full = which != "before"
    path, merged = {"before": (model, None), "after": (model, adapter), "reference": (reference_model, None)}[which]
    backend = load_plain(path, merged, backend_cfg.device, backend_cfg.batch_size)
    measured = audit_model(backend, params, anchor, inputs["graph"] if full else None, inputs["heldout"],
                           inputs["attacks"], gold, with_attack=full and bool(inputs["attacks"]),
                           heldout_nodes=inputs["heldout_nodes"])
    if which == "reference" and gold and holdout and params.evaluate.mia:
        measured.update(mia_report(backend, gold, holdout, params.evaluate.mia_k))
    attacks = inputs["attacks"]
    measured[AUDIT_INPUTS] = {"attack_rows": len(attacks[0]) if attacks else 0, "attacks": len(attacks),
                              "attack_skipped": inputs["attack_skipped"], "heldout_rows": len(inputs["heldout"])}
    return measured


AUDIT_INPUTS = "_inputs"  # what an audited model was measured on (the same for every model of a request)


def combine_audit(measured: dict[str, dict]) -> dict:
    """The audit of a request from its measured models ({"before", "after"[, "reference"]})."""
    return {"before": measured["before"], "after": measured["after"], "reference": measured.get("reference", {}),
            **measured["after"][AUDIT_INPUTS]}


def heldout_probe_rows(audit: dict, audit_set: Path) -> list[dict]:
    """What each held-out probe got from each model, for a reader of the report: its node, question and
    expected answer; the unattacked answers (before, after, never-trained reference); and after the first
    relearning attack at the rate that raised the unlearned model's recall most, both attacked models'
    answers with the probe's recall over every attack, in ROUGE-L and in facts the attack did not teach.
    [] when the audit kept no answers (an audit from before answers were kept)."""
    from lethe.fileio import load_qa_file

    after = audit["after"]
    if "_heldout_answers" not in after:
        return []
    pairs = load_qa_file(audit_set, "audit set")
    rows = [{"node": node, "question": q, "expected": a} for node, (q, a) in
            zip(probe_nodes(audit_set, len(pairs)), pairs)]
    rates = after.get(M.RELEARNED_BY_RATE["heldout"]) or {}
    lr = max(rates, key=lambda rate: rates[rate]["mean"]) if rates else None
    for which in ("before", "after", "reference"):
        measured = audit.get(which) or {}
        for row, answer in zip(rows, measured.get("_heldout_answers", [])):
            row[which] = answer
        record = (measured.get(M.RELEARNED_BY_RATE["heldout"]) or {}).get(lr) if lr else None
        attacked = ((measured.get("_relearn_answers") or {}).get("heldout") or {}).get(lr) if lr else None
        if record and attacked:
            for row, answer, rouge, novel in zip(rows, attacked, record["per_probe"], record["novel_per_probe"]):
                row.update({f"{which}_attacked": answer, f"{which}_attacked_rouge": rouge,
                            f"{which}_attacked_novel": novel})
    return rows


def audit_adapter(params: Params, model: Path, adapter: Path, anchor: str, mine_dir: Path,
                  gold: list[tuple[str, str]], holdout: list[tuple[str, str]],
                  reference_model: str | None) -> dict:
    """The audit (lethe.evaluate.audit) of the starting model, the unlearned model and, where one
    exists, a model that never knew the entity: {"before", "after", "reference"} metric dicts."""
    models = AUDITED_MODELS if reference_model else AUDITED_MODELS[:2]
    return combine_audit({
        which: audit_one_model(params, model, adapter, anchor, mine_dir, gold, holdout, reference_model, which)
        for which in models})


def evaluation_holdout(params: Params, model: Path, targets, forget_set: Path | None,
                       entity_only: bool = False) -> list[tuple[str, str]]:
    """The MIA holdout rows evaluate_adapter uses (the plan is seeded), without evaluating anything."""
    return [(q.question, q.answer) for q in _suite_plan(params, model, targets, forget_set, entity_only).holdout]
