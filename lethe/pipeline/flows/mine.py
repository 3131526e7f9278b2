"""Prefect flow: one anchor through the MAGE steps, each a tracked task."""

from __future__ import annotations

from prefect import flow

from lethe.pipeline.tasks.elicit import elicit
from lethe.pipeline.tasks.expand import expand
from lethe.pipeline.tasks.sample import sample
from lethe.pipeline.tasks.score import score
from lethe.pipeline.tasks.synthesize import synthesize
from lethe.pipeline.tasks.validate import validate


def run_mining_tasks(request: dict, workdir: str, params_path: str | None = None) -> dict:
    """elicit -> score -> expand -> sample -> synthesize -> validate as tasks of the calling flow;
    stops after score with status `nothing_memorized` when the model recalls nothing."""
    elicit(request, workdir, params_path)
    result = score(request, workdir, params_path)
    if result["nothing_memorized"]:
        return {**result, "status": "nothing_memorized"}
    for step in (expand, sample, synthesize, validate):
        result = step(request, workdir, params_path)
    return result


@flow(name="mine")
def mine_flow(request: dict, workdir: str, params_path: str | None = None) -> dict:
    """The MAGE steps for one request; stops if nothing is memorized."""
    return run_mining_tasks(request, workdir, params_path)
