"""A model folder's content hash: the same bytes hash the same anywhere, a changed file changes it."""

from __future__ import annotations

import shutil
import time

from lethe.llm.fingerprint import model_hash
from tests.architectures import build_tiny_model


def test_the_hash_follows_the_files_not_the_folder(tmp_path):
    model = build_tiny_model("llama", tmp_path / "model", chat=False)
    first = model_hash(model)
    assert model_hash(shutil.copytree(model, tmp_path / "copy")) == first
    (model / "notes.md").write_text("not a model file")
    assert model_hash(model) == first
    time.sleep(0.01)
    config = model / "config.json"
    config.write_text(config.read_text().replace("{", '{"lethe_note": 1,', 1))
    assert model_hash(model) != first  # the same folder, rewritten: hashed again, not remembered
