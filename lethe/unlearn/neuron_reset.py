"""Neuron reset: remove the MLP neurons that carry the entity, rather than only suppress them.

A LoRA update that makes a model stop saying what it knows leaves the knowledge in the base
weights: a few fine-tuning steps on a handful of the entity's facts bring the rest back (the
relearning attack of lethe.evaluate.audit). Before training, this step scores every MLP neuron by
its attribution |a * dL/da| to the answer NLL, once on the forget rows and once on the retain
rows (per answer token), and re-initializes, in every layer, the `fraction` of neurons whose forget share
is highest relative to their retain share: fresh input weights, zero output weights. What those
neurons stored is gone from the weights; the following training (the method's forget term plus
the retain term) repairs what the other entities lose.

The MLP projections are trained in full (peft `modules_to_save`), so the reset and everything
trained after it travel in the adapter and compose like any other adapter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers.pytorch_utils import Conv1D

from lethe.errors import LetheError
from lethe.llm.batching import collate_qa, token_logprobs
from lethe.llm.format import EncodedQA


@dataclass
class MlpBlock:
    """One layer's MLP: the projections into the hidden neurons and the one out of them."""

    layer: str
    inputs: list[torch.nn.Module]
    output: torch.nn.Module
    leaves: list[str]  # leaf names of the inputs and the output, as peft matches them

    @property
    def width(self) -> int:
        return _out_features(self.inputs[0])


def _out_features(module: torch.nn.Module) -> int:
    return module.weight.shape[1] if isinstance(module, Conv1D) else module.weight.shape[0]


def _in_features(module: torch.nn.Module) -> int:
    return module.weight.shape[0] if isinstance(module, Conv1D) else module.weight.shape[1]


def _base(module: torch.nn.Module) -> torch.nn.Module:
    """The trainable copy of a peft `modules_to_save` wrapper, or the module itself."""
    copies = getattr(module, "modules_to_save", None)
    if copies is not None and hasattr(module, "active_adapters"):
        return copies[module.active_adapters[0]]
    return module


def mlp_module_names(model: torch.nn.Module) -> list[str]:
    """The MLP projections a reset touches, as peft `modules_to_save` suffixes: `mlp.down_proj`,
    `mlp.gate_proj`, `mlp.up_proj` for Llama-style models, `mlp.c_fc`, `mlp.c_proj` for GPT-2 (whose
    attention has a `c_proj` too); a clear error for other layouts."""
    return sorted({f"mlp.{leaf}" for block in mlp_blocks(model) for leaf in block.leaves})


def mlp_blocks(model: torch.nn.Module) -> list[MlpBlock]:
    """Every layer's MLP, found by structure: a module called `mlp` whose output projection reads
    the hidden neurons that one or more input projections (same width) write."""
    blocks = []
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] != "mlp":
            continue
        children = {leaf: child for leaf, child in module.named_children()
                    if isinstance(_base(child), (torch.nn.Linear, Conv1D))}
        output_leaf = next((leaf for leaf in ("down_proj", "c_proj") if leaf in children), None)
        if output_leaf is None:
            continue
        width = _in_features(_base(children[output_leaf]))
        inputs = {leaf: child for leaf, child in children.items()
                  if leaf != output_leaf and _out_features(_base(child)) == width}
        if not inputs:
            continue
        blocks.append(MlpBlock(name, list(inputs.values()), children[output_leaf], [*inputs, output_leaf]))
    if not blocks:
        raise LetheError(f"unlearn.reset_fraction needs separate MLP projections (e.g. gate_proj/up_proj -> down_proj); "
                         f"this {getattr(getattr(model, 'config', None), 'model_type', type(model).__name__)} model "
                         "has none (fused layouts such as Phi-3's gate_up_proj are not supported): set it to 0")
    return blocks


def attribution(model: torch.nn.Module, blocks: Sequence[MlpBlock], rows: Sequence[EncodedQA], pad_id: int,
                batch_size: int = 8) -> list[torch.Tensor]:
    """Per block, per neuron: the mean over answer-predicting positions of |a * dL/da|, L the summed
    answer-token NLL (so forget and retain scores compare per token, whatever the batch sizes)."""
    totals = [torch.zeros(block.width) for block in blocks]
    tokens = 0
    captured: dict[int, torch.Tensor] = {}

    def capture(index: int):
        def hook(_module, args):
            activation = args[0]
            activation.retain_grad()
            captured[index] = activation
        return hook

    hooks = [block.output.register_forward_pre_hook(capture(i)) for i, block in enumerate(blocks)]
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        with torch.enable_grad():
            for start in range(0, len(rows), batch_size):
                batch = {k: v.to(device) for k, v in collate_qa(list(rows[start:start + batch_size]), pad_id).items()}
                model.zero_grad(set_to_none=True)
                logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
                logps, mask = token_logprobs(logits, batch["labels"])
                (-(logps * mask).sum()).backward()
                tokens += int(mask.sum())
                predicts_answer = (batch["labels"] != -100).roll(-1, dims=1).unsqueeze(-1)
                for i, activation in captured.items():
                    score = (activation * activation.grad).abs().float() * predicts_answer
                    totals[i] += score.sum(dim=(0, 1)).detach().cpu()
    finally:
        for hook in hooks:
            hook.remove()
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return [t / max(tokens, 1) for t in totals]


def reset_neurons(blocks: Sequence[MlpBlock], forget_scores: Sequence[torch.Tensor],
                  retain_scores: Sequence[torch.Tensor], fraction: float, seed: int) -> list[list[int]]:
    """Re-initialize, per block, the top `fraction` of neurons by forget / retain attribution:
    input weights drawn like a fresh layer's (the std of the current weights), output weights zero.
    Returns the reset neuron indices per block."""
    if not 0.0 < fraction < 1.0:
        raise LetheError(f"reset fraction must be between 0 and 1 (exclusive), got {fraction}")
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    with torch.no_grad():
        for block, forget, retain in zip(blocks, forget_scores, retain_scores):
            count = max(1, int(round(fraction * block.width)))
            index = (forget / (retain + 1e-12)).topk(count).indices.sort().values
            for module in block.inputs:
                weight = _base(module).weight
                rows = weight[:, index] if isinstance(_base(module), Conv1D) else weight[index]
                fresh = torch.randn(rows.shape, generator=generator).to(weight) * weight.std()
                if isinstance(_base(module), Conv1D):
                    weight[:, index] = fresh
                else:
                    weight[index] = fresh
                bias = getattr(_base(module), "bias", None)
                if bias is not None:
                    bias[index] = 0.0
            out = _base(block.output).weight
            if isinstance(_base(block.output), Conv1D):
                out[index] = 0.0
            else:
                out[:, index] = 0.0
            chosen.append(index.tolist())
    return chosen
