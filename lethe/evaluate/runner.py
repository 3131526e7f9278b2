"""Evaluate a base model and (optionally) the same model with an unlearning adapter."""

from __future__ import annotations

from pathlib import Path

from lethe.config import Params
from lethe.errors import LetheError
from lethe.evaluate.report import public, write_report
from lethe.evaluate.suite import build_plan, evaluate, retain_model_ratios
from lethe.llm.backend import Backend


def with_adapter(backend: Backend, adapter: Path) -> Backend:
    """The backend's model with a peft adapter on top (same tokenizer).

    peft injects the LoRA layers into the base model in place: score the base model before
    calling this, and do not use the original backend afterwards.
    """
    from peft import PeftModel

    if not (adapter / "adapter_config.json").is_file():
        raise LetheError(f"no LoRA adapter at {adapter} (expected adapter_config.json)")
    model = PeftModel.from_pretrained(backend.model, adapter)
    model.eval()
    return Backend(model, backend.tokenizer, backend.batch_size)


def evaluate_adapter(params: Params, model: Path, adapter: Path | None, targets, forget_set: Path | None,
                     out_dir: Path, before: dict | None = None, entity_only: bool = False) -> dict:
    """Metrics before and after; `before` may be passed in to skip re-scoring the base model."""
    from lethe.unlearn.run import load_qa_file

    cfg, backend_cfg = params.evaluate, params.backend
    pairs = load_qa_file(forget_set, "forget set") if forget_set else []
    plan = build_plan(model, cfg, targets, pairs, entity_only)
    reference = retain_model_ratios(plan, backend_cfg.device, backend_cfg.batch_size)
    base = Backend.load(model, backend_cfg.device, backend_cfg.batch_size)
    if before is None:
        before = evaluate(base, plan, cfg, reference)
    after = evaluate(with_adapter(base, adapter), plan, cfg, reference) if adapter else None
    paths = write_report(out_dir, before, after, {"targets": plan.targets, "adapter": str(adapter) if adapter else None})
    return {"targets": plan.targets, "before": public(before), "after": public(after) if after else None, **paths}
