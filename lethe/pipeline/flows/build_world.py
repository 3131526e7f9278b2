"""Prefect flow: build (or reuse) a world model and probe what it memorized."""

from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from lethe.config import Params, load_params


@task(name="world", cache_policy=NO_CACHE)
def build(size: str, params: Params) -> dict:
    """Train the world model and its retain model (cached by parameters and data)."""
    from lethe.world.build import build_world

    return build_world(params, size)


@task(name="probe", cache_policy=NO_CACHE)
def probe(size: str, params: Params) -> dict:
    """Memorization of the world model: ROUGE-L recall per split and on never-trained authors."""
    from lethe.llm.backend import Backend
    from lethe.world.build import build_world
    from lethe.world.probe import memorization_report

    record = build_world(params, size)
    backend = Backend.load(record["model_path"], params.backend.device, params.backend.batch_size)
    return memorization_report(backend, record["authors"], "holdout05", params.backend.max_new_tokens)


@flow(name="build_world")
def build_world_flow(size: str = "default", params_path: str | None = None) -> dict:
    """Build then probe one world size (params read once, here)."""
    params = load_params(params_path)
    record = build(size, params)
    return {"world": record, "probe": probe(size, params)}
