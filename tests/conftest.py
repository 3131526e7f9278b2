"""Shared fixtures: the tiny world is built once per session (cached under artifacts/ by params)."""

from __future__ import annotations

import pytest

from lethe.config import Params, load_params


@pytest.fixture(scope="session")
def params() -> Params:
    return load_params()


@pytest.fixture(scope="session")
def tiny_world(params: Params) -> dict:
    """Record of the tiny world build (model, retain model, authors)."""
    from lethe.world.build import build_world

    return build_world(params, "tiny")


@pytest.fixture(scope="session")
def tiny_backend(tiny_world: dict, params: Params):
    from lethe.llm.backend import Backend

    return Backend.load(tiny_world["model_path"], "cpu", params.backend.batch_size)
