"""Shared body of the MAGE step tasks: rebuild the request's pipeline and run one step."""

from __future__ import annotations

from pathlib import Path

from lethe.config import load_params
from lethe.mage import MagePipeline, Request


def run_mage_step(step: str, request: dict, workdir: str, params_path: str | None = None) -> dict:
    """Run `step` of the MAGE pipeline for `request` in `workdir` (skipped if already done)."""
    pipeline = MagePipeline(Request(**request), Path(workdir), load_params(params_path))
    seconds = pipeline.run_step(step)
    return {**pipeline.summary(), "step": step, "step_seconds": seconds,
            "nothing_memorized": pipeline.nothing_memorized()}
