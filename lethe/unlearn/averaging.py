"""The kept adapter as the mean of the weight updates of the last checkpoints of a run (unlearn.average_last).

Along one unlearning run the other author whose answers break can change from checkpoint to checkpoint
while the target stays forgotten: where the damage is particular to each step and the forgetting is
what the steps share, the mean of several checkpoints' updates keeps the forgetting and loses less of
the rest. Where early checkpoints break one author over and over, a span reaching back to them keeps
that damage (docs/forgetting-measurements.md, stop 57).

The mean is exact, not an approximation: the modules trained in full (peft `modules_to_save`) are
averaged, and each LoRA pair is concatenated across the K checkpoints (rank K x r, alpha K x alpha, so
the scale alpha / r is unchanged) with B divided by K, so that the product B A is the mean of the K
low-rank updates.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from lethe.errors import LetheError

WEIGHTS = "adapter_model.safetensors"
CONFIG = "adapter_config.json"


def mean_update(folders: Sequence[Path]) -> tuple[dict[str, torch.Tensor], dict]:
    """The weights and config of the adapter whose update is the mean of `folders`' (peft LoRA adapters
    of one run: the same modules, rank and alpha)."""
    configs = [json.loads((Path(f) / CONFIG).read_text()) for f in folders]
    config = configs[0]
    if any((c["r"], c["lora_alpha"], c.get("modules_to_save")) != (config["r"], config["lora_alpha"],
                                                                  config.get("modules_to_save")) for c in configs):
        raise LetheError(f"the adapters {[str(f) for f in folders]} differ in rank, alpha or fully trained modules: "
                         "only checkpoints of one run can be averaged")
    if config.get("rank_pattern") or config.get("alpha_pattern") or config.get("use_rslora") or config.get("use_dora"):
        raise LetheError("only plain LoRA adapters (no rank or alpha patterns, rsLoRA or DoRA) average exactly")
    states = [load_file(Path(f) / WEIGHTS) for f in folders]
    if any(s.keys() != states[0].keys() for s in states):
        raise LetheError("the adapters hold different weights: only checkpoints of one run can be averaged")
    k = len(states)
    mean: dict[str, torch.Tensor] = {}
    for key in states[0]:
        tensors = [s[key] for s in states]
        if ".lora_A." in key:
            mean[key] = torch.cat(tensors, dim=0).contiguous()
        elif ".lora_B." in key:
            mean[key] = (torch.cat(tensors, dim=1) / k).contiguous()
        else:
            mean[key] = torch.stack(tensors).mean(dim=0)
    return mean, {**config, "r": config["r"] * k, "lora_alpha": config["lora_alpha"] * k}


def write_mean_update(folders: Sequence[Path], out: Path) -> Path:
    """Write the adapter whose update is the mean of `folders`' into `out` (its weights and config; other
    files there, the tokenizer's, stay). `out` may be one of `folders`: all are read before it is written."""
    weights, config = mean_update(folders)
    out.mkdir(parents=True, exist_ok=True)
    save_file(weights, out / WEIGHTS)
    (out / CONFIG).write_text(json.dumps(config, indent=2))
    return out
