"""Shared body of the MAGE step tasks: rebuild the request's pipeline and run one step."""

from __future__ import annotations

from pathlib import Path

from lethe.config import Params
from lethe.mage import MagePipeline, Request


def run_mage_step(step: str, request: Request, workdir: str, params: Params) -> dict:
    """Run `step` of the MAGE pipeline for `request` in `workdir` (skipped if already done), with the
    parameters the flow loaded once for the whole run."""
    pipeline = MagePipeline(request, Path(workdir), params)
    seconds = pipeline.run_step(step)
    return {**pipeline.summary(), "step": step, "step_seconds": seconds,
            "nothing_memorized": pipeline.nothing_memorized()}
