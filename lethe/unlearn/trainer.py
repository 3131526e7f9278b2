"""LoRA unlearning: seeded, checkpointed and resumable, with an early stop on the forget loss.

The whole batch schedule is drawn from the seed before the first step, so a run resumed from a
checkpoint (adapter + optimizer + RNG state) takes exactly the batches the uninterrupted run
would have taken and ends with the same adapter.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from lethe.config import UnlearnParams
from lethe.errors import LetheError
from lethe.llm.batching import collate_qa
from lethe.llm.format import PromptFormat
from lethe.unlearn.methods import MethodParams, get_method

StepCallback = Callable[[int, int, dict], None]
STATE_FILE = "trainer_state.pt"


def check_target_modules(model: torch.nn.Module, targets: Sequence[str]) -> None:
    """Every LoRA target must name linear layers of the model; else a clear error before training."""
    leaves = {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
    missing = [t for t in targets if t not in leaves]
    if missing:
        raise LetheError(f"LoRA target modules {missing} do not exist in this model; its linear layers are "
                         f"{sorted(leaves)}")


def load_base(model_path: str | Path, device: torch.device):
    """Base model and tokenizer from a local folder (clear error when it is not one)."""
    from lethe.llm.backend import require_model_dir

    path = require_model_dir(model_path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(device)
    return model, tokenizer


def batch_schedule(n_forget: int, n_retain: int, batch_size: int, steps: int,
                   seed: int) -> list[tuple[list[int], list[int]]]:
    """(forget indices, retain indices) for every step, drawn once from the seed."""
    rng = random.Random(seed)

    def stream(n: int):
        while True:
            order = list(range(n))
            rng.shuffle(order)
            yield from order

    forget_stream, retain_stream = stream(n_forget), stream(n_retain) if n_retain else None
    schedule = []
    for _ in range(steps):
        f = [next(forget_stream) for _ in range(min(batch_size, n_forget))]
        r = [next(retain_stream) for _ in range(min(batch_size, n_retain))] if retain_stream else []
        schedule.append((f, r))
    return schedule


def balanced_backward(method, model, forget_batch, retain_batch, params: Sequence[torch.Tensor],
                      retain_weight: float) -> tuple[torch.Tensor, dict]:
    """Backward pass whose retain gradient is rescaled to `retain_weight` x the forget gradient's norm.

    On a forget set the model reproduces verbatim (answer NLL near 0), the ascent gradient can be
    hundreds of times smaller than the retain NLL's gradient; Adam then follows the retain term
    alone and GA+GD changes nothing. Rescaling the retain term every step keeps both objectives in play
    whatever their raw magnitudes. Costs a second backward pass. Leaves the sum in `p.grad`.
    """
    forget_term, retain_term, parts = method.terms(model, forget_batch, retain_batch)
    forget_term.backward()
    forget_grads = [p.grad.detach().clone() if p.grad is not None else None for p in params]
    for p in params:
        p.grad = None
    retain_term.backward()
    forget_norm = _norm(forget_grads)
    retain_norm = _norm([p.grad for p in params])
    scale = retain_weight * forget_norm / retain_norm if retain_norm > 0 else 0.0
    for p, g_forget in zip(params, forget_grads):
        g_retain = p.grad * scale if p.grad is not None else None
        p.grad = g_forget if g_retain is None else (g_retain if g_forget is None else g_forget + g_retain)
    total = forget_term.detach() + scale * retain_term.detach()
    return total, {**parts, "forget_grad_norm": forget_norm, "retain_grad_norm": retain_norm, "retain_scale": scale}


def _norm(grads: Sequence[torch.Tensor | None]) -> float:
    return math.sqrt(sum(float((g.float() ** 2).sum()) for g in grads if g is not None))


def _latest_checkpoint(out_dir: Path) -> Path | None:
    checkpoints = sorted((out_dir / "checkpoints").glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
    return next((c for c in reversed(checkpoints) if (c / STATE_FILE).is_file()), None)


def unlearn(
    model_path: str | Path,
    forget: Sequence[tuple[str, str]],
    retain: Sequence[tuple[str, str]],
    cfg: UnlearnParams,
    out_dir: Path,
    method_name: str | None = None,
    device: str = "auto",
    on_step: StepCallback | None = None,
    init_adapter: str | Path | None = None,
) -> dict:
    """Train a LoRA adapter that makes the model forget `forget` while keeping `retain`.

    Resumes from the latest checkpoint in `out_dir` if one exists; otherwise starts from
    `init_adapter` when given (a later SBU round continues the previous round's adapter).
    Returns paths, curves and timings; the adapter is saved with `save_pretrained` in
    `out_dir/adapter`.
    """
    from peft import LoraConfig, PeftModel, get_peft_model

    from lethe.llm.backend import resolve_device

    method = get_method(method_name or cfg.method, MethodParams(cfg.beta, cfg.gamma, cfg.forget_weight,
                                                                cfg.retain_weight, cfg.reference_noise))
    if not forget:
        raise LetheError("the forget set is empty: nothing to unlearn")
    if method.needs_retain and not retain:
        raise LetheError(f"method {method.name!r} needs a retain set, and the neighbor set is empty")
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    target = resolve_device(device)
    base, tokenizer = load_base(model_path, target)
    check_target_modules(base, cfg.lora.target_modules)
    if cfg.gradient_checkpointing:
        base.gradient_checkpointing_enable()
        base.enable_input_require_grads()  # or LoRA layers never receive gradients

    out_dir.mkdir(parents=True, exist_ok=True)
    resume_from = _latest_checkpoint(out_dir)
    if resume_from:
        model = PeftModel.from_pretrained(base, resume_from, is_trainable=True)
    elif init_adapter:
        model = PeftModel.from_pretrained(base, Path(init_adapter), is_trainable=True)
    else:
        lora = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                          target_modules=list(cfg.lora.target_modules), task_type="CAUSAL_LM")
        model = get_peft_model(base, lora)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.lr)

    fmt = PromptFormat(tokenizer)
    forget_enc = [fmt.encode(q, a) for q, a in forget]
    retain_enc = [fmt.encode(q, a) for q, a in retain]
    schedule = batch_schedule(len(forget_enc), len(retain_enc), cfg.batch_size, cfg.max_steps, cfg.seed)
    curves: list[dict] = []
    start_step, stopped_by = 0, "max_steps"
    if resume_from:
        state = torch.load(resume_from / STATE_FILE, weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        start_step, curves = state["step"], state["curves"]

    pad = tokenizer.pad_token_id
    model.train()
    started = time.perf_counter()
    for step in range(start_step, cfg.max_steps):
        f_idx, r_idx = schedule[step]
        forget_batch = {k: v.to(target) for k, v in collate_qa([forget_enc[i] for i in f_idx], pad).items()}
        retain_batch = ({k: v.to(target) for k, v in collate_qa([retain_enc[i] for i in r_idx], pad).items()}
                        if r_idx else None)
        optimizer.zero_grad(set_to_none=True)
        if cfg.balance_gradients and method.needs_retain:
            loss, parts = balanced_backward(method, model, forget_batch, retain_batch, trainable, cfg.retain_weight)
        else:
            loss, parts = method.loss(model, forget_batch, retain_batch)
            loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        record = {"step": step + 1, "loss": loss.item(), **parts}
        curves.append(record)
        if on_step:
            on_step(step + 1, cfg.max_steps, record)
        if (step + 1) % cfg.checkpoint_every == 0 and step + 1 < cfg.max_steps:
            ckpt = out_dir / "checkpoints" / f"step-{step + 1}"
            model.save_pretrained(ckpt)
            torch.save({"optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state(),
                        "step": step + 1, "curves": curves}, ckpt / STATE_FILE)
        if parts.get("forget_nll", 0.0) > cfg.forget_nll_bound:
            stopped_by = "forget_nll_bound"
            break
    seconds = time.perf_counter() - started
    model.eval()
    adapter_dir = out_dir / "adapter"
    model.save_pretrained(adapter_dir)
    tokenizer.save_pretrained(adapter_dir)
    merged_dir = None
    if cfg.merge:
        merged_dir = out_dir / "merged"
        model.merge_and_unload().save_pretrained(merged_dir)
        tokenizer.save_pretrained(merged_dir)
    result = {
        "adapter_path": str(adapter_dir),
        "merged_path": str(merged_dir) if merged_dir else None,
        "method": method.name,
        "steps": len(curves),
        "stopped_by": stopped_by,
        "resumed_from_step": start_step,
        "seconds": seconds,
        "seconds_per_step": seconds / max(1, len(curves) - start_step),
        "forget_rows": len(forget),
        "retain_rows": len(retain),
        "curves": curves,
    }
    (out_dir / "curves.json").write_text(json.dumps(curves, indent=1))
    shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)  # the run finished: nothing to resume
    return result
