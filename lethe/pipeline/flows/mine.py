"""Prefect flow: one anchor through the MAGE steps, each a tracked task."""

from __future__ import annotations

from prefect import flow

from lethe.config import Params, load_params
from lethe.mage import Request
from lethe.pipeline.tasks.elicit import elicit
from lethe.pipeline.tasks.expand import expand
from lethe.pipeline.tasks.sample import sample
from lethe.pipeline.tasks.score import score
from lethe.pipeline.tasks.synthesize import synthesize
from lethe.pipeline.tasks.validate import validate


def run_mining_tasks(request: Request, workdir: str, params: Params) -> dict:
    """elicit -> score -> expand -> sample -> synthesize -> validate as tasks of the calling flow;
    stops after score with status `nothing_memorized` when the model recalls nothing."""
    elicit(request, workdir, params)
    result = score(request, workdir, params)
    if result["nothing_memorized"]:
        return {**result, "status": "nothing_memorized"}
    for step in (expand, sample, synthesize, validate):
        result = step(request, workdir, params)
    return result


@flow(name="mine")
def mine_flow(request: dict, workdir: str, params_path: str | None = None) -> dict:
    """The MAGE steps for one request; stops if nothing is memorized. Params are read once, here."""
    return run_mining_tasks(Request(**request), workdir, load_params(params_path))
