"""The projection layers of a causal LM, whatever its family calls them: what LoRA adapts, the audit
rounds and distillation re-initializes."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers.pytorch_utils import Conv1D

ADAPTABLE = (torch.nn.Linear, Conv1D)


def adaptable_layers(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """Every Linear / Conv1D module by full name, the output head excluded."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return {name: module for name, module in model.named_modules()
            if isinstance(module, ADAPTABLE) and module is not head}


def projection_names(model: torch.nn.Module) -> list[str]:
    """The leaf names of `adaptable_layers`, sorted and deduplicated: what peft's `target_modules` matches."""
    return sorted({name.rsplit(".", 1)[-1] for name in adaptable_layers(model)})


def uses_conv1d(model: torch.nn.Module, targets: Sequence[str]) -> bool:
    """True when the targets are GPT-2-style Conv1D layers (their weight is stored transposed)."""
    wanted = set(targets)
    return any(isinstance(module, Conv1D) for name, module in adaptable_layers(model).items()
               if name.rsplit(".", 1)[-1] in wanted)


def decoder_blocks(model: torch.nn.Module) -> torch.nn.ModuleList | None:
    """The model's stack of transformer blocks (Llama's `model.layers`, GPT-2's `transformer.h`, ...):
    the first ModuleList as long as `config.num_hidden_layers`; None where there is none."""
    blocks = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    return next((module for module in model.modules()
                 if isinstance(module, torch.nn.ModuleList) and len(module) == blocks), None)
