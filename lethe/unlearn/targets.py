"""Which layers of a causal LM carry the LoRA update, for any architecture.

`auto` adapts every attention and MLP projection the model has, whatever its family calls them:
Llama/Qwen2/Mistral/Gemma's `q_proj ... down_proj`, Phi-3's fused `qkv_proj` / `gate_up_proj`,
GPT-2's `Conv1D` projections `c_attn`, `c_proj`, `c_fc`. Embeddings and the output head are never
adapted (the head is often tied to the input embeddings; adapting it would change every token's
likelihood, not the entity's knowledge). Names are leaf names, as peft matches them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lethe.errors import LetheError
from lethe.llm.layers import projection_names

AUTO = "auto"


def resolve_targets(model: torch.nn.Module, requested: str | Sequence[str]) -> list[str]:
    """The LoRA target leaf names: all projections for `auto`, else `requested` after checking it.

    A requested name must be the leaf name of a Linear or Conv1D layer that is not the output head;
    otherwise the error lists the names this model has, so the fix is one edit of params.yaml.
    """
    leaves = projection_names(model)
    if not leaves:
        raise LetheError(f"{type(model).__name__} has no Linear or Conv1D projection layer to adapt with LoRA")
    if isinstance(requested, str):
        requested = [requested]
    if list(requested) == [AUTO]:
        return leaves
    missing = [name for name in requested if name not in leaves]
    if missing:
        raise LetheError(f"LoRA target modules {missing} do not exist in this {model.config.model_type} model; its "
                         f"projection layers are {leaves} (or set unlearn.lora.target_modules: auto)")
    return list(requested)


def check_targets(model_path, requested: str | Sequence[str]) -> list[str]:
    """`resolve_targets` on the model's skeleton (meta device, no weights read): a wrong name fails in
    well under a second, before anything waits for the machine's training slot or loads weights."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_path)
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config)
    return resolve_targets(skeleton, requested)
