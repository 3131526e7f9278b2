"""Requests compose: the champion is the base model with every accepted adapter merged in order.

A new request starts from that composed model, so the next adapter is trained on top of what has
already been forgotten. The composed folder is cached by the chain's content hash and carries the
base model's world.json, so evaluation plans stay limited to the authors the world learned.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from lethe.errors import LetheError


def chain_key(adapters: Sequence[str | Path]) -> str:
    """Content hash of an adapter chain (order matters)."""
    digest = hashlib.sha256()
    for adapter in adapters:
        for path in sorted(Path(adapter).glob("adapter_*")):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def compose(base_model: str | Path, adapters: Sequence[str | Path], cache_dir: str | Path) -> Path:
    """The base model with `adapters` merged in order, saved as a plain model folder (cached)."""
    base_model = Path(base_model)
    if not adapters:
        return base_model
    for adapter in adapters:
        if not (Path(adapter) / "adapter_config.json").is_file():
            raise LetheError(f"the champion's adapter {adapter} is missing; restore it before composing")
    out = Path(cache_dir) / chain_key(adapters)
    model_dir = out / "model"
    if (model_dir / "config.json").is_file():
        return model_dir
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lethe.world.build import MODEL_KEYS, RECORD, read_record

    model = AutoModelForCausalLM.from_pretrained(base_model)
    for adapter in adapters:
        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    staging = out / "model.partial"
    if staging.exists():
        shutil.rmtree(staging)
    model.save_pretrained(staging)
    AutoTokenizer.from_pretrained(base_model).save_pretrained(staging)
    staging.rename(model_dir)
    world = read_record(base_model.parent)
    if world:  # its paths made absolute: the copy sits in another folder, and its reader in any
        world.update({key: str(Path(world[key]).resolve()) for key in MODEL_KEYS if key in world})
        (out / RECORD).write_text(json.dumps(world, indent=2))
    return model_dir
