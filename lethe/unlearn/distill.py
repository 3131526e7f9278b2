"""Noise, then distill: copy what the unlearned model *says* into weights that never held the entity.

An unlearning update that suppresses an entity leaves its knowledge in the weights, and a few
fine-tuning steps bring it back (the audit's relearning attack). "Distillation robustifies
unlearning" (UNDO, arXiv 2506.06278) breaks that link: the student starts from the unlearned
weights mixed with a fresh random initialization, theta_s = (1 - alpha) theta_u + alpha theta_0, and
is trained to match the unlearned teacher's next-token distributions (KL) on a corpus that does not
concern the entity. The damage the noise did is repaired only where the teacher's outputs demand
it, so the suppressed entity, whose facts the teacher no longer produces, stays damaged in the
weights themselves.

Deviations from UNDO, on purpose: embeddings, normalization weights and biases are neither noised
nor trained (the student's change lives in the projection layers only, so it travels as an exact
full-rank LoRA adapter and composes like every other one, see `delta_adapter`); the corpus is the
request's retain set plus the forget questions with the teacher's own (suppressed) answers.
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers.pytorch_utils import Conv1D

from lethe.errors import LetheError
from lethe.llm.batching import collate_qa
from lethe.llm.format import PromptFormat
from lethe.llm.layers import adaptable_layers

Pairs = Sequence[tuple[str, str]]


@dataclass(frozen=True)
class DistillSettings:
    """How much of the unlearned weights to replace by noise, and how long to distill."""

    alpha: float  # share of fresh initialization in the student's projection weights
    steps: int
    lr: float
    batch_size: int
    seed: int
    temperature: float = 1.0


def noised_student(teacher: torch.nn.Module, alpha: float, seed: int) -> torch.nn.Module:
    """A copy of `teacher` whose projection weights are (1 - alpha) x theirs + alpha x a fresh
    initialization of the same architecture (drawn from `seed`); everything else is copied as is."""
    if not 0.0 < alpha <= 1.0:
        raise LetheError(f"distill alpha must be in (0, 1], got {alpha}")
    student = copy.deepcopy(teacher)
    generator = torch.Generator().manual_seed(seed)
    std = getattr(teacher.config, "initializer_range", 0.02)
    with torch.no_grad():
        for module in adaptable_layers(student).values():
            fresh = torch.randn(module.weight.shape, generator=generator) * std
            module.weight.mul_(1.0 - alpha).add_(fresh.to(module.weight), alpha=alpha)
    return student


def distill(teacher: torch.nn.Module, student: torch.nn.Module, tokenizer, corpus: Pairs,
            settings: DistillSettings, on_step=None) -> list[float]:
    """Train the student's projection weights to match the teacher's next-token distribution
    (KL(teacher || student), at `temperature`) on every prompt and answer token of `corpus`.
    Returns the loss of every step."""
    if not corpus:
        raise LetheError("distillation needs a corpus of (question, answer) rows, and it is empty")
    layers = adaptable_layers(student)
    for parameter in student.parameters():
        parameter.requires_grad_(False)
    trainable = [module.weight for module in layers.values()]
    for weight in trainable:
        weight.requires_grad_(True)
    fmt = PromptFormat(tokenizer)
    encoded = [fmt.encode(q, a) for q, a in corpus]
    optimizer = torch.optim.AdamW(trainable, lr=settings.lr, weight_decay=0.0)
    rng = random.Random(settings.seed)
    device = next(student.parameters()).device
    teacher.eval()
    student.train()
    losses = []
    tau = settings.temperature
    for step in range(settings.steps):
        chosen = rng.sample(range(len(encoded)), min(settings.batch_size, len(encoded)))
        batch = {k: v.to(device) for k, v in collate_qa([encoded[i] for i in chosen], tokenizer.pad_token_id).items()}
        mask = batch["attention_mask"][:, 1:].bool()
        with torch.no_grad():
            target = F.log_softmax(teacher(input_ids=batch["input_ids"],
                                           attention_mask=batch["attention_mask"]).logits[:, :-1].float() / tau, -1)
        logits = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
        kl = F.kl_div(F.log_softmax(logits / tau, -1), target, log_target=True, reduction="none").sum(-1)
        loss = (kl * mask).sum() / mask.sum() * tau ** 2
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        losses.append(loss.item())
        if on_step:
            on_step(step + 1, settings.steps, {"distill_kl": losses[-1]})
    student.eval()
    for parameter in student.parameters():
        parameter.requires_grad_(False)
    return losses


def _out_by_in(module: torch.nn.Module) -> torch.Tensor:
    return module.weight.T if isinstance(module, Conv1D) else module.weight


def delta_adapter(base: torch.nn.Module, student: torch.nn.Module, out_dir: Path) -> Path:
    """Save student - base as a peft LoRA adapter of full rank per layer (B A = the exact difference,
    by SVD), so that the distilled model composes, registers and loads like any other adapter.

    Only the projection layers may differ: anything else that changed is an error (it would be lost).
    """
    from peft import LoraConfig, get_peft_model

    base_layers, student_layers = adaptable_layers(base), adaptable_layers(student)
    projections = {f"{layer}.weight" for layer in student_layers}
    other = {n: p for n, p in student.named_parameters() if n not in projections}
    base_params = dict(base.named_parameters())
    changed = [n for n, p in other.items() if not torch.equal(p, base_params[n])]
    if changed:
        raise LetheError(f"the distilled student changed weights outside the projection layers: {changed[:3]}")
    leaves = sorted({name.rsplit(".", 1)[-1] for name in base_layers})
    ranks = {name: min(_out_by_in(m).shape) for name, m in base_layers.items()}
    config = LoraConfig(r=max(ranks.values()), lora_alpha=max(ranks.values()), target_modules=leaves,
                        rank_pattern={rf"^{n}$": r for n, r in ranks.items()},
                        alpha_pattern={rf"^{n}$": r for n, r in ranks.items()},  # scaling alpha / r = 1
                        fan_in_fan_out=any(isinstance(m, Conv1D) for m in base_layers.values()),
                        init_lora_weights=False, task_type="CAUSAL_LM")
    carrier = get_peft_model(copy.deepcopy(base), config)
    lora_modules = {name.removeprefix("base_model.model."): module for name, module in carrier.named_modules()
                    if hasattr(module, "lora_A") and "default" in getattr(module, "lora_A", {})}
    with torch.no_grad():
        for name, module in base_layers.items():
            delta = (_out_by_in(student_layers[name]) - _out_by_in(module)).float()
            u, s, vh = torch.linalg.svd(delta, full_matrices=False)
            root = s.sqrt()
            lora = lora_modules[name]
            lora.lora_A["default"].weight.copy_(root[:, None] * vh)
            lora.lora_B["default"].weight.copy_(u * root[None, :])
    carrier.save_pretrained(out_dir)
    return out_dir


def teacher_answers(teacher, questions: Sequence[str], answers: int, temperature: float, max_new_tokens: int,
                    seed: int) -> list[tuple[str, str]]:
    """(question, answer) rows of the teacher's own answers: its greedy one, plus `answers - 1` sampled
    ones per question (duplicates and empty answers dropped)."""
    rows = list(zip(questions, teacher.greedy(list(questions), max_new_tokens)))
    if answers > 1:
        sampled = teacher.sample(list(questions), answers - 1, temperature=temperature,
                                 max_new_tokens=max_new_tokens, seed=seed)
        rows += [(q, a) for q, group in zip(questions, sampled) for a in group]
    return [row for row in dict.fromkeys(rows) if row[1].strip()]


def distill_adapter(model_path: str | Path, adapter: str | Path, retain: Pairs, questions: Sequence[str], cfg,
                    out_dir: Path, device: str = "auto", seed: int = 0, max_new_tokens: int = 64,
                    threads: int = 2) -> dict:
    """The request's final adapter after noise-then-distill: teacher = the model with `adapter` merged,
    student = `noised_student(teacher, cfg.alpha)`, distilled on the retain rows and on `questions`
    (the forget questions, and prompts about the entities to keep) answered by the teacher itself;
    saved as an exact full-rank adapter in `out_dir`.

    Runs inside the machine's training slot. `cfg` is params.yaml's `unlearn.distill`.
    """
    from peft import PeftModel

    from lethe.llm.backend import Backend
    from lethe.machine import thread_count, training_slot

    started = time.perf_counter()
    with training_slot():
        torch.set_num_threads(thread_count(threads))
        base = Backend.load(model_path, device, dtype=torch.float32)
        teacher = PeftModel.from_pretrained(copy.deepcopy(base.model), str(adapter)).merge_and_unload()
        teacher.eval()
        corpus = list(retain) + teacher_answers(Backend(teacher, base.tokenizer), questions, cfg.answers,
                                                cfg.sample_temperature, max_new_tokens, seed)
        settings = DistillSettings(cfg.alpha, cfg.steps, cfg.lr, cfg.batch_size, seed, cfg.temperature)
        student = noised_student(teacher, settings.alpha, seed)
        losses = distill(teacher, student, base.tokenizer, corpus, settings)
        delta_adapter(base.model, student, out_dir)
        base.tokenizer.save_pretrained(out_dir)
    return {"adapter_path": str(out_dir), "alpha": cfg.alpha, "steps": cfg.steps, "corpus_rows": len(corpus),
            "kl_first": losses[0], "kl_last": sum(losses[-10:]) / len(losses[-10:]),
            "seconds": time.perf_counter() - started}
