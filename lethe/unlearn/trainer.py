"""LoRA unlearning: seeded, checkpointed and resumable, with an early stop on the forget loss.

The whole batch schedule is drawn from the seed before the first step, so a run resumed from a
checkpoint (adapter + optimizer + RNG state) takes exactly the batches the uninterrupted run
would have taken and ends with the same adapter.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from lethe import failpoints
from lethe.config import UnlearnParams
from lethe.errors import LetheError
from lethe.evaluate.floor import forgotten
from lethe.llm.batching import collate_qa
from lethe.llm.format import EncodedQA, PromptFormat
from lethe.llm.layers import uses_conv1d
from lethe.unlearn.gradients import DisruptionMask, Grads, InnerAttack, relearning_shift, shaped_backward
from lethe.unlearn.methods import get_method, kl_to_reference
from lethe.unlearn.neuron_reset import attribution, mlp_blocks, mlp_module_names, reset_neurons
from lethe.unlearn.retain_dual import retain_multiplier
from lethe.unlearn.retain_replay import RetainReplay
from lethe.unlearn.saturation import saturation
from lethe.unlearn.swap_retain import SwapRetain, swap_batch
from lethe.unlearn.targets import check_layers, check_targets, resolve_targets

if TYPE_CHECKING:
    from lethe.unlearn.budget_reelicit import ReelicitCheck
    from lethe.unlearn.budget_relearn import RelearnCheck
    from lethe.unlearn.specific_tokens import ForgetFocus

StepCallback = Callable[[int, int, dict], None]
Probe = Callable[[torch.nn.Module], dict[str, float]]  # model -> {"dev_rouge", "utility"[, "dev_floor"]}
STATE_FILE = "trainer_state.pt"
STEP_ADAPTERS_DIR = "step_adapters"


class BudgetTracker:
    """The adaptive budget: after every `eval_every` steps, dev-probe recall and a utility proxy.

    Stops at the first point, `min_steps` or later, with dev recall <= stop_forget_ratio x its value
    before training (where the probe reports `dev_floor`, the dev recall of a model that never knew the
    entity, the recall above it: lethe.evaluate.floor) and utility >= stop_utility_ratio x before, at
    that point and at the `stop_confirmations` - 1 points before it (a dip of a few dev probes is noise
    the gate's held-out probes need not share). Where the probe reports `train_facts` (the facts of some
    training forget rows still in the greedy answers), they must also be at <= stop_train_ratio x before:
    the dev probes can be a handful of garbled rows whose recall dips while the facts trained on are
    untouched. Otherwise the best such point that kept utility (lowest dev recall, one that met the
    training-facts target first) is kept. `path` is the whole forget-vs-utility trajectory, for MLflow
    and the report.

    With a `relearn_check` (unlearn.stop_relearn_gap > 0; lethe.unlearn.budget_relearn), a point that
    meets both targets is also attacked, as the gate's audit attacks the final model: its dev recall after
    a simulated relearning attack minus the never-trained reference's after the same attack
    (`dev_relearn_gap`) must be <= stop_relearn_gap and, where the starting model's dev recall was more
    than stop_floor_margin above the reference's (`dev_relearn_margin`, taken at step 0), <=
    stop_relearn_share of that margin. The best point is one that passed it where any did. Only points
    that meet the other targets pay for the attack.

    With a `reelicit_check` (unlearn.stop_reelicit; lethe.unlearn.budget_reelicit), such a point is first
    elicited again and must keep the strong memories within the gate's re-elicitation bound
    (`reelicit_ok`); the relearning attack runs only on a point that passed it, and the best point is one
    that passed every check made where any did.
    """

    def __init__(self, probe: Probe, cfg: UnlearnParams, path: list[dict] | None = None,
                 relearn_check: RelearnCheck | None = None, reelicit_check: ReelicitCheck | None = None):
        self.probe, self.cfg, self.relearn_check, self.reelicit_check = probe, cfg, relearn_check, reelicit_check
        self.path = path or []

    @property
    def start(self) -> dict:
        return self.path[0]

    def measure(self, model, step: int) -> dict:
        model.eval()
        try:
            return self._measure(model, step)
        finally:
            model.train()

    def _measure(self, model, step: int) -> dict:
        values = self.probe(model)
        point = {"step": step, **values}
        if not self.path and self.relearn_check is not None:
            point["dev_relearn_margin"] = self.relearn_check.margin(model)
        if self.path:
            point["dev_ratio"] = values["dev_rouge"] / self.start["dev_rouge"] if self.start["dev_rouge"] else 0.0
            point["utility_ratio"] = values["utility"] / self.start["utility"] if self.start["utility"] else 1.0
            if "train_facts" in values:
                before = self.start.get("train_facts")
                point["train_ratio"] = values["train_facts"] / before if before else 0.0
            point["hits_target"] = (step >= self.cfg.min_steps and self._forgotten(point)
                                    and point["utility_ratio"] >= self.cfg.stop_utility_ratio
                                    and self._training_facts_gone(point))
            if point["hits_target"] and self.reelicit_check is not None:  # the cheaper check first
                started = time.perf_counter()
                point.update(self.reelicit_check(model), reelicit_seconds=time.perf_counter() - started)
                point["hits_target"] = point["reelicit_ok"]
            if point["hits_target"] and self.relearn_check is not None:
                started = time.perf_counter()
                point.update(self.relearn_check(model), dev_relearn_seconds=time.perf_counter() - started)
                point.update(self._relearn_verdict(point["dev_relearn_gap"]))
                point["hits_target"] = point["relearn_ok"]
            recent = [*self.path[1:], point][-self.cfg.stop_confirmations:]
            point["meets_target"] = (len(recent) == self.cfg.stop_confirmations
                                     and all(p.get("hits_target", p.get("meets_target")) for p in recent))
        self.path.append(point)
        return point

    def _forgotten(self, point: dict) -> bool:
        """The dev target: a share of the recall before, counted above the never-trained floor where
        the probe reports one (lethe.evaluate.floor), the gate's held-out rule."""
        return forgotten(self.start["dev_rouge"], point["dev_rouge"], point.get("dev_floor"),
                         self.cfg.stop_floor_margin, self.cfg.stop_forget_ratio)

    def _training_facts_gone(self, point: dict) -> bool:
        """The training rows' facts at <= stop_train_ratio of before (met where the probe scores none)."""
        return point.get("train_ratio", 0.0) <= self.cfg.stop_train_ratio

    def _relearn_verdict(self, gap: float) -> dict:
        """The gate's relearning rule on the dev probes: the gap, absolute and as a share of the margin
        where the margin separates the starting model from the reference ({"relearn_ok"[, "dev_relearn_share"]})."""
        margin = self.start.get("dev_relearn_margin")
        if margin is None or margin <= self.cfg.stop_floor_margin:
            return {"relearn_ok": gap <= self.cfg.stop_relearn_gap}
        share = gap / margin
        return {"relearn_ok": gap <= self.cfg.stop_relearn_gap and share <= self.cfg.stop_relearn_share,
                "dev_relearn_share": share}

    def best(self) -> dict | None:
        """The lowest-dev-recall point that kept utility (one that met the training-facts target and passed
        the re-elicitation and relearning checks first, where those are checked), if any."""
        kept = [p for p in self.path[1:] if p["utility_ratio"] >= self.cfg.stop_utility_ratio
                and p["step"] >= self.cfg.min_steps]
        checks = [name for name, check in (("reelicit_ok", self.reelicit_check), ("relearn_ok", self.relearn_check))
                  if check is not None]

        def passed(p: dict) -> bool:
            return self._training_facts_gone(p) and all(p.get(c, False) for c in checks)

        return min(kept, key=lambda p: (not passed(p), p["dev_ratio"], -p["step"])) if kept else None


def load_base(model_path: str | Path, device: str | torch.device, dtype: str | torch.dtype | None = None):
    """Base model and tokenizer from a local folder (clear error when it is not one).

    dtype None/'auto': bfloat16 on CUDA, float32 on CPU. The LoRA weights are float32 whatever the
    base's dtype (peft keeps adapters in float32), so the saved adapter is float32 too.
    """
    from lethe.llm.loading import load_causal_lm, load_tokenizer, require_model_dir, resolve_device, resolve_dtype

    path = require_model_dir(model_path)
    target = resolve_device(device) if isinstance(device, str) else device
    return load_causal_lm(path, target, resolve_dtype(dtype, target)), load_tokenizer(path)


def batch_schedule(n_forget: int, n_retain: int, batch_size: int, steps: int, seed: int,
                   retain_batch_size: int = 0) -> list[tuple[list[int], list[int]]]:
    """(forget indices, retain indices) for every step, drawn once from the seed; `retain_batch_size`
    retain rows a step (0: `batch_size`)."""
    rng = random.Random(seed)

    def stream(n: int):
        while True:
            order = list(range(n))
            rng.shuffle(order)
            yield from order

    forget_stream, retain_stream = stream(n_forget), stream(n_retain) if n_retain else None
    retain_size = min(retain_batch_size or batch_size, n_retain)
    schedule = []
    for _ in range(steps):
        f = [next(forget_stream) for _ in range(min(batch_size, n_forget))]
        r = [next(retain_stream) for _ in range(retain_size)] if retain_stream else []
        schedule.append((f, r))
    return schedule


def _latest_checkpoint(out_dir: Path) -> Path | None:
    checkpoints = sorted((out_dir / "checkpoints").glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
    return next((c for c in reversed(checkpoints) if (c / STATE_FILE).is_file()), None)


def unlearn(model_path: str | Path, forget: Sequence[tuple[str, str]], retain: Sequence[tuple[str, str]],
            cfg: UnlearnParams, out_dir: Path, method_name: str | None = None, device: str = "auto",
            on_step: StepCallback | None = None, init_adapter: str | Path | None = None,
            probe: Probe | None = None, dtype: str | None = None, relearn_check: RelearnCheck | None = None,
            focus: ForgetFocus | None = None, swap: SwapRetain | None = None,
            reelicit_check: ReelicitCheck | None = None) -> dict:
    """`train_adapter` inside the machine's training slot (one training run per machine at a time),
    with torch threads set from the cores free once the slot is held (see lethe.machine)."""
    from lethe.machine import thread_count, training_slot

    check_inputs(model_path, forget, retain, cfg, method_name)  # an input error is not worth waiting for the slot
    with training_slot() as slot:
        threads = thread_count(cfg.threads)
        torch.set_num_threads(threads)
        result = train_adapter(model_path, forget, retain, cfg, out_dir, method_name, device, on_step, init_adapter,
                               probe, dtype, relearn_check, focus, swap, reelicit_check)
    return {**result, "threads": threads, "slot_wait_seconds": slot["waited_seconds"]}


def check_inputs(model_path: str | Path, forget: Sequence[tuple[str, str]], retain: Sequence[tuple[str, str]],
                 cfg: UnlearnParams, method_name: str | None = None) -> None:
    """Every check that needs no weights: the data checks of `_method_for`, and LoRA target names
    that exist in this architecture (on its meta-device skeleton)."""
    _method_for(forget, retain, cfg, method_name)
    check_targets(model_path, cfg.lora.target_modules, cfg.lora.layers)


def _method_for(forget: Sequence[tuple[str, str]], retain: Sequence[tuple[str, str]], cfg: UnlearnParams,
                method_name: str | None):
    """The method to train: a known one, with a forget set, and a retain set when it needs one."""
    name = method_name or cfg.method
    method = get_method(name, cfg.method_config(name))
    if not forget:
        raise LetheError("the forget set is empty: nothing to unlearn")
    if method.needs_retain and not retain:
        raise LetheError(f"method {method.name!r} needs a retain set, and the neighbor set is empty")
    if cfg.disruption_mask and not method.needs_retain:
        raise LetheError(f"unlearn.disruption_mask masks the forget gradient by the retain gradient, and method "
                         f"{method.name!r} has no retain term: use one that has (e.g. npo_gd, ga_gd)")
    if cfg.retain_dual_rate > 0 and not method.needs_retain:
        raise LetheError(f"unlearn.retain_dual_rate weighs the retain term, and method {method.name!r} has none: "
                         "use one that has (e.g. npo_gd, ga_gd), or set retain_dual_rate to 0")
    return method


def train_adapter(
    model_path: str | Path,
    forget: Sequence[tuple[str, str]],
    retain: Sequence[tuple[str, str]],
    cfg: UnlearnParams,
    out_dir: Path,
    method_name: str | None = None,
    device: str = "auto",
    on_step: StepCallback | None = None,
    init_adapter: str | Path | None = None,
    probe: Probe | None = None,
    dtype: str | None = None,
    relearn_check: RelearnCheck | None = None,
    focus: ForgetFocus | None = None,
    swap: SwapRetain | None = None,
    reelicit_check: ReelicitCheck | None = None,
) -> dict:
    """Train a LoRA adapter that makes the model forget `forget` while keeping `retain`.

    Resumes from the latest checkpoint in `out_dir` if one exists; otherwise starts from
    `init_adapter` when given (a later SBU round continues the previous round's adapter).
    With `probe` and `cfg.eval_every`, the budget is adaptive (see BudgetTracker; `relearn_check` and
    `reelicit_check` add its relearning and re-elicitation checks). With `focus`, the forget term is on the
    answer tokens about the entity only (lethe.unlearn.specific_tokens; scored on the base model before any
    adapter, so a resumed run masks the same tokens); the simulated relearning attack still trains on whole
    rows. With `swap` and `cfg.swap_retain_rows`, a KL term holds that many forget rows a step, renamed after
    other entities, at the starting model on the tokens they share (lethe.unlearn.swap_retain; also scored
    before any adapter). Returns paths, curves, the budget path and timings; the adapter is saved with
    `save_pretrained` in `out_dir/adapter`.
    """
    from lethe.llm.backend import resolve_device

    method = _method_for(forget, retain, cfg, method_name)  # target names: resolve_targets on the real model
    torch.manual_seed(cfg.seed)
    target = resolve_device(device)
    base, tokenizer = load_base(model_path, target, dtype)
    targets = resolve_targets(base, cfg.lora.target_modules)  # before the token scoring below: a bad name fails fast
    check_layers(base, cfg.lora.layers)
    swap = swap if swap and cfg.swap_retain_rows else None
    masks, swap_rows = (_on_base(base, lambda: _focus_and_swap(base, tokenizer, forget, focus, swap, cfg.batch_size))
                        if focus or swap else (None, []))
    out_dir.mkdir(parents=True, exist_ok=True)
    resume_from = _latest_checkpoint(out_dir)
    model = _adapted_model(base, targets, cfg, target, resume_from, init_adapter)
    run = _TrainingRun(model, method, cfg, tokenizer, target, forget, retain, probe, relearn_check, masks, swap_rows,
                       reelicit_check)
    if resume_from:
        run.restore(resume_from)
    if run.budget is not None and not run.budget.path:
        run.budget.measure(model, 0)
    reset = None
    if cfg.reset_fraction > 0 and not resume_from and not init_adapter:  # a resumed run has it in its checkpoint
        reset = _reset_mlp_neurons(model, run.forget_enc, run.retain_enc, cfg, tokenizer.pad_token_id)
    started = time.perf_counter()
    stopped_by = run.train(out_dir, on_step)
    seconds = time.perf_counter() - started
    if cfg.keep_checkpoints:  # the last step is never checkpointed: keep it beside the checkpoints
        shutil.rmtree(out_dir / STEP_ADAPTERS_DIR, ignore_errors=True)
        model.save_pretrained(out_dir / STEP_ADAPTERS_DIR / f"step-{len(run.curves)}")
    chosen = _choose(run.budget, stopped_by)
    kept_step = chosen["step"] if chosen else len(run.curves)
    adapter_dir = _save_adapter(model, tokenizer, out_dir, chosen, len(run.curves))
    averaged = _average_kept(out_dir, adapter_dir, kept_step, cfg)
    merged_dir = _save_merged(model if chosen_is_last(chosen, len(run.curves)) and not averaged else None,
                              model_path, adapter_dir, out_dir, tokenizer, target, dtype) if cfg.merge else None
    result = {
        "adapter_path": str(adapter_dir),
        "merged_path": str(merged_dir) if merged_dir else None,
        "method": method.name,
        "target_modules": targets,
        "lora_layers": cfg.lora.layers,
        "base_dtype": str(next(base.parameters()).dtype).removeprefix("torch."),
        "gradient_checkpointing": bool(getattr(base, "is_activation_checkpointing", False)),
        "steps": len(run.curves),
        "stopped_by": stopped_by,
        "resumed_from_step": run.start_step,
        "seconds": seconds,
        "seconds_per_step": seconds / max(1, len(run.curves) - run.start_step),
        "forget_rows": len(forget),
        "retain_rows": len(retain),
        "curves": run.curves,
        "budget_path": run.budget.path if run.budget else [],
        "chosen_step": kept_step,
        "budget_met": bool(chosen and chosen.get("meets_target")),
        "saturation": saturation(run.curves, run.budget.path if run.budget else []),
        "reset": reset,
        "specific_tokens": _mask_summary(masks, focus),
        "swap_retain": _swap_summary(swap_rows, swap, cfg),
        "retain_dual": _dual_summary(run.curves, cfg, run.budget is not None, kept_step),
        "averaged": {"requested": cfg.average_last, "every": cfg.average_every, "steps": averaged}
        if cfg.average_last > 1 else None,
    }
    (out_dir / "curves.json").write_text(json.dumps(run.curves, indent=1))
    if cfg.keep_checkpoints:
        result["step_adapters"] = _keep_step_adapters(out_dir)
    shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)  # the run finished: nothing to resume
    shutil.rmtree(out_dir / "best", ignore_errors=True)
    return result


def _keep_step_adapters(out_dir: Path) -> list[int]:
    """Move each complete checkpoint's adapter (its optimizer state dropped) to out_dir/step_adapters/step-N,
    beside the last step's adapter saved there after training; returns every step kept there. A checkpoint
    left under checkpoints/ would be resumed from, so they move out of it."""
    kept_dir = out_dir / STEP_ADAPTERS_DIR
    for ckpt in (out_dir / "checkpoints").glob("step-*"):
        if (ckpt / STATE_FILE).is_file():
            (ckpt / STATE_FILE).unlink()
            ckpt.rename(kept_dir / ckpt.name)
    return sorted(int(p.name.split("-")[1]) for p in kept_dir.glob("step-*"))


def _dual_summary(curves: Sequence[dict], cfg: UnlearnParams, adaptive: bool, kept_step: int) -> dict | None:
    """What the retain term's dual multiplier did (unlearn.retain_dual_rate): its largest value, and the
    one that trained the kept step's last update; None when off."""
    if cfg.retain_dual_rate <= 0:
        return None
    if not adaptive:
        return {"rate": cfg.retain_dual_rate, "applied": False,
                "why": "a fixed budget scores no utility proxy to answer to"}
    multipliers = [c["retain_multiplier"] for c in curves if "retain_multiplier" in c]
    return {"rate": cfg.retain_dual_rate, "max": cfg.retain_dual_max, "applied": True,
            "largest": max(multipliers, default=1.0),
            "at_kept_step": curves[kept_step - 1].get("retain_multiplier", 1.0) if kept_step else 1.0}


def _on_base(base, score: Callable):
    """`score()` with the base model in eval mode, its mode restored after."""
    was_training = base.training
    base.eval()
    try:
        return score()
    finally:
        base.train(was_training)


def _focus_and_swap(base, tokenizer, forget: Sequence[tuple[str, str]], focus: ForgetFocus | None,
                    swap: SwapRetain | None, batch_size: int) -> tuple[list[tuple[bool, ...]] | None, list[EncodedQA]]:
    """The forget term's token masks (with `focus`) and swap retain's renamed rows (with `swap`; at least one
    of the two), scored on the base model with one pass per renamed entity between them."""
    from lethe.llm.backend import Backend
    from lethe.unlearn.specific_tokens import RenamedScores, shared_rows, specific_masks

    backend = Backend(base, tokenizer, batch_size)
    scores = RenamedScores(backend, forget, (focus or swap).names)
    masks = (specific_masks(backend, forget, focus.names, focus.swaps, focus.margin, focus.aggregate, scores)
             if focus else None)
    if swap is None:
        return masks, []
    if focus is not None and swap.names != focus.names:
        scores = None  # renamed from other names: nothing to share
    return masks, shared_rows(backend, forget, swap.names, swap.others, swap.margin, scores)


def _swap_summary(rows: list[EncodedQA], swap: SwapRetain | None, cfg: UnlearnParams) -> dict | None:
    """What swap retain held, for the report."""
    if swap is None or not cfg.swap_retain_rows:
        return None
    held = sum(sum(r.loss_mask or ()) for r in rows)
    total = sum(len(r.answer_ids) for r in rows)
    return {"others": len(swap.others), "rows": len(rows), "held_tokens": held, "answer_tokens": total,
            "held_share": held / total if total else 0.0, "rows_per_step": cfg.swap_retain_rows,
            "weight": cfg.swap_retain_weight}


def _mask_summary(masks: list[tuple[bool, ...]] | None, focus: ForgetFocus | None) -> dict | None:
    """What the forget term's token mask kept, for the report."""
    if masks is None or focus is None:
        return None
    kept, total = sum(sum(m) for m in masks), sum(len(m) for m in masks)
    return {"names": list(focus.names), "swaps": list(focus.swaps), "margin": focus.margin,
            "aggregate": focus.aggregate, "kept_tokens": kept, "answer_tokens": total,
            "kept_share": kept / total if total else None}


def _adapted_model(base, targets: Sequence[str], cfg: UnlearnParams, device: torch.device,
                   resume_from: Path | None, init_adapter: str | Path | None):
    """The trainable peft model: the checkpoint's adapter when resuming, else `init_adapter`, else a
    new LoRA (with the MLP trained in full when a neuron reset is asked for); adapters in float32."""
    from peft import LoraConfig, PeftModel, get_peft_model

    if cfg.gradient_checkpointing is True or (cfg.gradient_checkpointing == "auto" and device.type == "cuda"):
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        base.enable_input_require_grads()  # or LoRA layers never receive gradients
    if resume_from or init_adapter:
        model = PeftModel.from_pretrained(base, Path(resume_from or init_adapter), is_trainable=True)
    else:
        full = mlp_module_names(base) if cfg.reset_fraction > 0 else []
        lora_targets = _lora_targets(targets, full)
        lora = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                          target_modules=lora_targets, modules_to_save=full or None,
                          layers_to_transform=cfg.lora.layers,
                          fan_in_fan_out=uses_conv1d(base, lora_targets), task_type="CAUSAL_LM")
        model = get_peft_model(base, lora)
    for p in model.parameters():
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()  # the adapter trains and is saved in float32 over a bf16 base
    return model


class _TrainingRun:
    """The state of one training run: data, schedule, optimizer, curves, budget; checkpointable."""

    def __init__(self, model, method, cfg: UnlearnParams, tokenizer, device: torch.device,
                 forget: Sequence[tuple[str, str]], retain: Sequence[tuple[str, str]], probe: Probe | None,
                 relearn_check: RelearnCheck | None = None, forget_masks: list[tuple[bool, ...]] | None = None,
                 swap_rows: Sequence[EncodedQA] = (), reelicit_check: ReelicitCheck | None = None):
        self.model, self.method, self.cfg, self.device = model, method, cfg, device
        self.pad = tokenizer.pad_token_id
        self.trainable = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.trainable, lr=cfg.lr)
        fmt = PromptFormat(tokenizer)
        self.forget_enc = [fmt.encode(q, a) for q, a in forget]
        # the forget term's rows: only the tokens about the entity where a mask is given (the attack keeps whole rows)
        self.forget_term_enc = (self.forget_enc if forget_masks is None else
                                [replace(e, loss_mask=m) for e, m in zip(self.forget_enc, forget_masks)])
        self.retain_enc = [fmt.encode(q, a) for q, a in retain]
        self.swap_enc = list(swap_rows)  # renamed forget rows, loss-masked to the tokens they share
        self.schedule = batch_schedule(len(self.forget_enc), len(self.retain_enc), cfg.batch_size, cfg.max_steps,
                                       cfg.seed, cfg.retain_batch_size)
        self.curves: list[dict] = []
        self.start_step = 0
        self.budget = (BudgetTracker(probe, cfg, relearn_check=relearn_check, reelicit_check=reelicit_check)
                       if probe is not None and cfg.eval_every > 0 else None)
        self.disruption = DisruptionMask(cfg.disruption_momentum) if cfg.disruption_mask else None
        self.replay = (RetainReplay(cfg.retain_replay_share, cfg.retain_replay_every, cfg.seed)
                       if cfg.retain_replay_share > 0 and self.retain_enc and method.needs_retain else None)
        self.shift: Grads | None = None  # the last simulated relearning attack's weight shift (inner_attack_every)
        self.method_config = method.p  # the retain weight as configured; retain_dual_rate scales a copy

    def restore(self, checkpoint: Path) -> None:
        """Optimizer, RNG, step, curves and budget path of a checkpoint (its adapter is already loaded)."""
        state = torch.load(checkpoint / STATE_FILE, weights_only=False)
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        self.start_step, self.curves = state["step"], state["curves"]
        if self.budget is not None:
            self.budget.path = state.get("budget_path", [])
        if self.disruption is not None and state.get("disruption"):
            self.disruption.load_state_dict(state["disruption"])
        if self.replay is not None and state.get("replay"):
            self.replay.load_state_dict(state["replay"])

    def _batch(self, encoded, indices) -> dict[str, torch.Tensor] | None:
        if not indices:
            return None
        return {k: v.to(self.device) for k, v in collate_qa([encoded[i] for i in indices], self.pad).items()}

    def step(self, step: int) -> dict:
        """One optimizer step on the schedule's batches of `step`; its curve record."""
        f_idx, r_idx = self.schedule[step]
        dual_parts = self._weigh_retain()
        replay_parts: dict[str, float] = {}
        if self.replay is not None:
            r_idx, replay_parts = self.replay.rows(self.model, self.retain_enc, self.pad, self.device,
                                                   len(r_idx), r_idx, step)
        forget_batch, retain_batch = self._batch(self.forget_term_enc, f_idx), self._batch(self.retain_enc, r_idx)
        self.optimizer.zero_grad(set_to_none=True)
        balance = self.cfg.balance_gradients and self.method.needs_retain
        shift, attack_parts = self._attack_shift(step, f_idx)
        if balance or self.cfg.sam_rho > 0 or shift is not None or self.disruption is not None:
            loss, parts = shaped_backward(self.method, self.model, forget_batch, retain_batch, self.trainable,
                                          retain_balance=self.method.p.retain_weight if balance else None,
                                          sam_rho=self.cfg.sam_rho, sam_space=self.cfg.sam_space,
                                          attack_shift=shift, disruption=self.disruption)
            parts = {**parts, **attack_parts}
        else:
            loss, parts = self.method.loss(self.model, forget_batch, retain_batch)
            loss.backward()
        if self.swap_enc:
            # after the shaped backward, which sets .grad: this term's gradient adds to it
            swap = self._batch(self.swap_enc, swap_batch(len(self.swap_enc), self.cfg.swap_retain_rows,
                                                         self.cfg.seed, step))
            kl = kl_to_reference(self.model, swap)
            (self.cfg.swap_retain_weight * kl).backward()
            loss, parts = loss + self.cfg.swap_retain_weight * kl.detach(), {**parts, "swap_kl": kl.item()}
        torch.nn.utils.clip_grad_norm_(self.trainable, 1.0)
        self.optimizer.step()
        return {"step": step + 1, "loss": loss.item(), **parts, **replay_parts, **dual_parts}

    def _weigh_retain(self) -> dict[str, float]:
        """Set the method's retain weight to the configured one x the dual multiplier of the budget's path so
        far (unlearn.retain_dual_rate; lethe.unlearn.retain_dual); the multiplier for the curves."""
        if self.cfg.retain_dual_rate <= 0 or self.budget is None:
            return {}
        multiplier = retain_multiplier(self.budget.path, self.cfg.stop_utility_ratio, self.cfg.retain_dual_rate,
                                       self.cfg.retain_dual_max)
        weight = self.method_config.retain_weight * multiplier
        if self.method.p.retain_weight != weight:
            self.method.p = self.method_config.model_copy(update={"retain_weight": weight})
        return {"retain_multiplier": multiplier}

    def _attack_shift(self, step: int, forget_indices: Sequence[int]) -> tuple[Grads | None, dict]:
        """The weight shift of the relearning attack simulated for `step`: a fresh attack every
        `inner_attack_every` steps (and on the first step run, so a resumed run, which starts at a checkpoint,
        a multiple of it, attacks where the whole run did), the last one's shift in between."""
        attack = self._inner_attack(step, forget_indices)
        if attack is None:
            return None, {}
        if self.shift is None or step % self.cfg.inner_attack_every == 0:
            self.shift, parts = relearning_shift(self.model, attack)
            return self.shift, {**parts, "attack_refreshed": 1.0, "attack_lr": attack.lr}
        return self.shift, {"attack_refreshed": 0.0}

    def _inner_attack(self, step: int, forget_indices: Sequence[int]) -> InnerAttack | None:
        """The relearning attack simulated in `step` (unlearn.inner_attack_steps): forget rows outside the
        step's batch (the batch itself when there are none) and, where `inner_attack_lr` lists several, one
        of its rates, all drawn from the seed and the step, so a resumed run draws the same ones."""
        if self.cfg.inner_attack_steps <= 0:
            return None
        in_batch = set(forget_indices)
        others = [i for i in range(len(self.forget_enc)) if i not in in_batch] or sorted(in_batch)
        draw = self.cfg.seed * 1_000_003 + step
        rows = random.Random(draw).sample(others, min(self.cfg.inner_attack_rows, len(others)))
        lr = random.Random(f"inner-attack-lr-{draw}").choice(self.cfg.inner_attack_lrs)
        return InnerAttack(self._batch(self.forget_enc, sorted(rows)), self.cfg.inner_attack_steps, lr)

    def checkpoint(self, out_dir: Path, step: int) -> None:
        """Adapter + optimizer + RNG state at `step`; the state file, written whole, marks it complete."""
        ckpt = out_dir / "checkpoints" / f"step-{step}"
        self.model.save_pretrained(ckpt)
        partial = ckpt / f".{STATE_FILE}.partial"
        torch.save({"optimizer": self.optimizer.state_dict(), "torch_rng": torch.get_rng_state(), "step": step,
                    "curves": self.curves, "budget_path": self.budget.path if self.budget else [],
                    "disruption": self.disruption.state_dict() if self.disruption else None,
                    "replay": self.replay.state_dict() if self.replay else None}, partial)
        partial.replace(ckpt / STATE_FILE)
        failpoints.reach("training.checkpointed")

    def train(self, out_dir: Path, on_step: StepCallback | None) -> str:
        """Steps from `start_step` to the cap, the adaptive budget's stop or the forget-NLL bound;
        returns what stopped it."""
        cfg, stopped_by = self.cfg, "max_steps"
        self.model.train()
        for step in range(self.start_step, cfg.max_steps):
            record = self.step(step)
            self.curves.append(record)
            if on_step:
                on_step(step + 1, cfg.max_steps, record)
            if self.budget is not None and (step + 1) % cfg.eval_every == 0:
                point = self.budget.measure(self.model, step + 1)
                if self.budget.best() is point:
                    self.model.save_pretrained(out_dir / "best")
                if point["meets_target"]:
                    stopped_by = "adaptive_target"
            if (step + 1) % cfg.checkpoint_every == 0 and step + 1 < cfg.max_steps and stopped_by == "max_steps":
                self.checkpoint(out_dir, step + 1)
            if stopped_by != "max_steps":
                break
            if record.get("forget_nll", 0.0) > cfg.forget_nll_bound:
                stopped_by = "forget_nll_bound"
                break
        self.model.eval()
        return stopped_by


def chosen_is_last(chosen: dict | None, steps: int) -> bool:
    """Whether the kept step is the run's last one (no budget point chosen before it)."""
    return chosen is None or chosen["step"] == steps


def _save_adapter(model, tokenizer, out_dir: Path, chosen: dict | None, steps: int) -> Path:
    """The kept adapter in out_dir/adapter: the budget's best checkpoint, else the last step."""
    adapter_dir = out_dir / "adapter"
    if not chosen_is_last(chosen, steps) and (out_dir / "best").is_dir():
        shutil.rmtree(adapter_dir, ignore_errors=True)
        shutil.copytree(out_dir / "best", adapter_dir)  # the best checkpoint, not the last one
    else:
        model.save_pretrained(adapter_dir)
    tokenizer.save_pretrained(adapter_dir)
    return adapter_dir


def _average_kept(out_dir: Path, adapter_dir: Path, kept_step: int, cfg: UnlearnParams) -> list[int]:
    """With unlearn.average_last > 1, replace the kept adapter by the mean update of it and the checkpoints
    average_every, 2 x average_every, ... steps before it that the run wrote (lethe.unlearn.averaging);
    returns the steps averaged, oldest first (empty: off)."""
    from lethe.unlearn.averaging import write_mean_update

    if cfg.average_last <= 1:
        return []
    wanted = [kept_step - i * cfg.average_every for i in range(cfg.average_last - 1, 0, -1)]
    checkpoints = out_dir / "checkpoints"
    earlier = [step for step in wanted if step > 0 and (checkpoints / f"step-{step}" / STATE_FILE).is_file()]
    if earlier:
        write_mean_update([*(checkpoints / f"step-{step}" for step in earlier), adapter_dir], adapter_dir)
    return [*earlier, kept_step]


def _save_merged(model, model_path: str | Path, adapter_dir: Path, out_dir: Path, tokenizer, device, dtype) -> Path:
    """The kept adapter merged into the base weights (unlearn.merge), in out_dir/merged: from `model` where
    it holds the kept adapter, else from the saved adapter on a freshly loaded base."""
    from peft import PeftModel

    merged_dir = out_dir / "merged"
    if model is None:
        base, _ = load_base(model_path, device, dtype)
        model = PeftModel.from_pretrained(base, adapter_dir)
    model.merge_and_unload().save_pretrained(merged_dir)
    tokenizer.save_pretrained(merged_dir)
    return merged_dir


def _lora_targets(targets: Sequence[str], full_modules: Sequence[str]) -> list[str]:
    """LoRA targets without the layers trained in full (a module cannot be both)."""
    full_leaves = {name.rsplit(".", 1)[-1] for name in full_modules}
    kept = [t for t in targets if t not in full_leaves]
    if full_modules and not kept:
        raise LetheError(f"unlearn.reset_fraction trains the MLP projections {list(full_modules)} in full, and the LoRA "
                         f"targets {list(targets)} are all among them: add an attention projection to "
                         "unlearn.lora.target_modules (or use auto)")
    return kept


def _reset_mlp_neurons(model, forget_enc: list[EncodedQA], retain_enc: list[EncodedQA], cfg: UnlearnParams,
                       pad_id: int) -> dict:
    """Score every MLP neuron on forget vs retain rows and re-initialize the most forget-specific
    share (lethe.unlearn.neuron_reset). The retain side is a seeded sample of at most 256 rows."""
    if not retain_enc:
        raise LetheError("unlearn.reset_fraction needs retain rows to tell the entity's neurons from everyone "
                         "else's, and the retain set is empty")
    started = time.perf_counter()
    blocks = mlp_blocks(model)
    retain_sample = random.Random(cfg.seed).sample(retain_enc, min(256, len(retain_enc)))
    forget_scores = attribution(model, blocks, forget_enc, pad_id, cfg.batch_size)
    retain_scores = attribution(model, blocks, retain_sample, pad_id, cfg.batch_size)
    chosen = reset_neurons(blocks, forget_scores, retain_scores, cfg.reset_fraction, cfg.seed)
    model.train()
    return {"fraction": cfg.reset_fraction, "neurons": sum(len(c) for c in chosen),
            "of": sum(b.width for b in blocks), "layers": [b.layer for b in blocks],
            "seconds": time.perf_counter() - started}


def _choose(budget: BudgetTracker | None, stopped_by: str) -> dict | None:
    """The budget point whose adapter is kept: the one that met the target, else the best one."""
    if budget is None or len(budget.path) < 2:
        return None
    if stopped_by == "adaptive_target":
        return budget.path[-1]
    return budget.best() or budget.path[-1]
