"""Composing the champion: the base model with the accepted adapters merged, carrying its world record."""

import json
from pathlib import Path

from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from lethe.evaluate.suite import world_record
from lethe.ops.compose import compose
from tests.architectures import build_tiny_model


def test_the_composed_model_names_the_base_worlds_retain_model_from_anywhere(tmp_path, monkeypatch):
    """The composed folder sits elsewhere, so its copy of the base's world.json must name the base world's
    retain model by a path that still resolves there (the never-trained reference of every later audit)."""
    world = tmp_path / "project" / "artifacts" / "world" / "default"
    build_tiny_model("llama", world / "model", chat=False)
    (world / "retain_model").mkdir()
    (world / "world.json").write_text(json.dumps({
        "model_path": "artifacts/world/default/model", "retain_model_path": "artifacts/world/default/retain_model",
        "authors": [{"index": 0, "name": "A", "split": "forget"}]}))
    adapter = tmp_path / "adapter"
    model = AutoModelForCausalLM.from_pretrained(world / "model")
    get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"])).save_pretrained(adapter)
    monkeypatch.chdir(tmp_path / "project")
    composed = compose(Path("artifacts/world/default/model"), [adapter], tmp_path / "composed")
    monkeypatch.chdir(tmp_path)
    record = world_record(composed)
    assert Path(record["retain_model_path"]) == (world / "retain_model").resolve()
    assert record["authors"] == [{"index": 0, "name": "A", "split": "forget"}]
