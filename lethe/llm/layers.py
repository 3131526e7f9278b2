"""The projection layers of a causal LM, whatever its family calls them: what LoRA adapts, the audit
rounds and distillation re-initializes."""

from __future__ import annotations

import torch
from transformers.pytorch_utils import Conv1D

ADAPTABLE = (torch.nn.Linear, Conv1D)


def adaptable_layers(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """Every Linear / Conv1D module by full name, the output head excluded."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return {name: module for name, module in model.named_modules()
            if isinstance(module, ADAPTABLE) and module is not head}
