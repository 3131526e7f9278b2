"""ModelCache: a model folder is loaded once, and another folder is another model."""

from __future__ import annotations

from lethe.llm.cache import ModelCache


def test_a_model_is_loaded_once_per_folder(tiny_world, params):
    models = ModelCache(params.backend)
    first = models.get(tiny_world["model_path"])
    assert models.get(tiny_world["model_path"]) is first
    other = models.get(tiny_world["retain_model_path"])
    assert other is not first and other.model is not first.model
