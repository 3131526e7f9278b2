"""SAGE: post-hoc spectral sanitization of a LoRA unlearning update.

For each adapted linear layer with base weight W0 and update Delta = s B A, the retain
activation bias is ||Delta X_r||_F / ||W0 X_r||_F over real inputs X_r of that layer on a retain
proxy. The update is shrunk along the high-energy directions of the retain input covariance C_r
while its effect on forget inputs (covariance C_f) is kept, in closed form:

    Delta' = Delta (I + mu C_f) (I + lambda C_r + mu C_f)^-1

which stays low rank: A' = A M with M = (I + mu C_f)(I + lambda C_r + mu C_f)^-1 and B unchanged.
C_r and C_f are the uncentred second moments of the inputs, each divided by its spectral norm so
that lambda and mu mean the same thing in every layer. Inputs are taken from the base model
(adapter disabled), over every non-padding token of the proxy sequences.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from lethe.config import SageParams
from lethe.llm.batching import collate_qa
from lethe.llm.format import PromptFormat


def _lora_layers(model) -> dict[str, torch.nn.Module]:
    return {name: module for name, module in model.named_modules()
            if hasattr(module, "lora_A") and "default" in getattr(module, "lora_A", {})}


def _out_by_in(module: torch.nn.Module) -> torch.Tensor:
    """The base weight as (out, in), like B @ A: GPT-2's Conv1D stores it (in, out)."""
    weight = module.base_layer.weight
    return weight.T if getattr(module, "fan_in_fan_out", False) else weight


@torch.no_grad()
def input_moments(model, tokenizer, pairs: Sequence[tuple[str, str]], layers: dict[str, torch.nn.Module],
                  batch_size: int = 16) -> dict[str, torch.Tensor]:
    """Sum of x x^T over every non-padding token's input to each layer (adapter disabled)."""
    fmt = PromptFormat(tokenizer)
    sums = {name: None for name in layers}
    mask_holder: dict[str, torch.Tensor] = {}

    def hook(name):
        def capture(module, args):
            x = args[0][mask_holder["mask"]].double()  # (tokens, in) for Linear and Conv1D alike
            outer = x.T @ x
            sums[name] = outer if sums[name] is None else sums[name] + outer
        return capture

    handles = [module.register_forward_pre_hook(hook(name)) for name, module in layers.items()]
    device = next(model.parameters()).device
    try:
        with model.disable_adapter():
            for start in range(0, len(pairs), batch_size):
                batch = collate_qa([fmt.encode(q, a) for q, a in pairs[start : start + batch_size]],
                                   tokenizer.pad_token_id)
                mask_holder["mask"] = batch["attention_mask"].bool().to(device)
                model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device))
    finally:
        for handle in handles:
            handle.remove()
    return sums


def _normalized(moment: torch.Tensor) -> torch.Tensor:
    norm = torch.linalg.matrix_norm(moment, ord=2)
    return moment / norm if norm > 0 else moment


def sanitize_matrix(A: torch.Tensor, C_r: torch.Tensor, C_f: torch.Tensor | None, lam: float,
                    mu: float) -> torch.Tensor:
    """A' = A (I + mu C_f)(I + lam C_r + mu C_f)^-1 (covariances already normalized)."""
    eye = torch.eye(C_r.shape[0], dtype=C_r.dtype)
    keep = eye + (mu * C_f if C_f is not None else 0)
    system = eye + lam * C_r + (mu * C_f if C_f is not None else 0)
    # M = keep @ system^-1  <=>  M @ system = keep  <=>  system^T M^T = keep^T
    M = torch.linalg.solve(system.T, keep.T).T
    return (A.double() @ M).to(A.dtype)


def retain_bias(delta: torch.Tensor, W0: torch.Tensor, moment: torch.Tensor) -> float:
    """||Delta X||_F / ||W0 X||_F from the second moment X X^T (no activations stored)."""
    num = torch.trace(delta.double() @ moment @ delta.double().T).clamp(min=0).sqrt()
    den = torch.trace(W0.double() @ moment @ W0.double().T).clamp(min=1e-30).sqrt()
    return float(num / den)


def sanitize_adapter(base_path: str | Path, adapter_path: str | Path, retain_proxy: Sequence[tuple[str, str]],
                     forget: Sequence[tuple[str, str]], cfg: SageParams, out_path: Path) -> dict:
    """Write the sanitized adapter to out_path; report the retain activation bias per layer."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(adapter_path)
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, adapter_path)
    model.eval()
    layers = _lora_layers(model)
    retain_sums = input_moments(model, tokenizer, list(retain_proxy)[: cfg.retain_proxy_rows], layers)
    forget_sums = input_moments(model, tokenizer, list(forget), layers) if cfg.mu > 0 and forget else {}

    weights = load_file(str(Path(adapter_path) / "adapter_model.safetensors"))
    per_layer, new_weights = [], dict(weights)
    for name, module in layers.items():
        A = module.lora_A["default"].weight.detach().cpu()
        B = module.lora_B["default"].weight.detach().cpu()
        scale = module.scaling["default"]
        W0 = _out_by_in(module).detach().cpu().float()
        C_r = _normalized(retain_sums[name])
        C_f = _normalized(forget_sums[name]) if name in forget_sums else None
        A_new = sanitize_matrix(A, C_r, C_f, cfg.lam, cfg.mu)
        before = retain_bias(scale * B @ A, W0, retain_sums[name])
        after = retain_bias(scale * B @ A_new, W0, retain_sums[name])
        forget_kept = (retain_bias(scale * B @ A_new, W0, forget_sums[name]) /
                       max(retain_bias(scale * B @ A, W0, forget_sums[name]), 1e-30)) if name in forget_sums else None
        key = next(k for k in weights if k.endswith(f"{name.removeprefix('base_model.model.')}.lora_A.weight"))
        new_weights[key] = A_new.contiguous()
        per_layer.append({"layer": name.removeprefix("base_model.model."), "retain_bias_before": before,
                          "retain_bias_after": after, "forget_effect_kept": forget_kept})
    shutil.rmtree(out_path, ignore_errors=True)
    shutil.copytree(adapter_path, out_path)
    save_file(new_weights, str(out_path / "adapter_model.safetensors"))
    mean = lambda key: sum(layer[key] for layer in per_layer) / len(per_layer)  # noqa: E731
    report = {"adapter_path": str(out_path), "lambda": cfg.lam, "mu": cfg.mu,
              "retain_proxy_rows": min(len(retain_proxy), cfg.retain_proxy_rows),
              "mean_retain_bias_before": mean("retain_bias_before"),
              "mean_retain_bias_after": mean("retain_bias_after"),
              "layers": per_layer}
    (out_path / "sage_report.json").write_text(json.dumps(report, indent=1))
    return report
