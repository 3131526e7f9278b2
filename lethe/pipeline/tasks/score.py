"""Prefect task for the MAGE step 'score' (see lethe.mage)."""

from prefect import task

from lethe.config import Params
from lethe.mage import Request
from lethe.pipeline.tasks.mage_step import run_mage_step


@task(name="score", retries=0, retry_delay_seconds=5)
def score(request: Request, workdir: str, params: Params) -> dict:
    """Run the 'score' step for a request; resumable (a finished step is not re-run)."""
    return run_mage_step("score", request, workdir, params)
