"""Which layers of a causal LM carry the LoRA update, for any architecture.

`auto` adapts every attention and MLP projection the model has, whatever its family calls them:
Llama/Qwen2/Mistral/Gemma's `q_proj ... down_proj`, Phi-3's fused `qkv_proj` / `gate_up_proj`,
GPT-2's `Conv1D` projections `c_attn`, `c_proj`, `c_fc`. Embeddings and the output head are never
adapted (the head is often tied to the input embeddings; adapting it would change every token's
likelihood, not the entity's knowledge). Names are leaf names, as peft matches them.

`unlearn.lora.layers` narrows the adapter to some transformer blocks (peft's `layers_to_transform`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lethe.errors import LetheError
from lethe.llm.layers import decoder_blocks, projection_names

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


def check_layers(model: torch.nn.Module, layers: Sequence[int] | None) -> None:
    """Refuse block indices this model does not have (or a model whose blocks cannot be found)."""
    if layers is None:
        return
    blocks = decoder_blocks(model)
    if blocks is None:
        raise LetheError(f"unlearn.lora.layers needs a stack of transformer blocks; none was found in this "
                         f"{model.config.model_type} model (remove unlearn.lora.layers to adapt every block)")
    beyond = [index for index in layers if index >= len(blocks)]
    if beyond:
        raise LetheError(f"unlearn.lora.layers {beyond} do not exist: this model has {len(blocks)} blocks, "
                         f"0 to {len(blocks) - 1}")


def check_targets(model_path, requested: str | Sequence[str], layers: Sequence[int] | None = None) -> list[str]:
    """`resolve_targets` and `check_layers` on the model's skeleton (meta device, no weights read): a wrong
    name fails in well under a second, before anything waits for the machine's training slot or loads weights."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_path)
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config)
    check_layers(skeleton, layers)
    return resolve_targets(skeleton, requested)
