"""Prefect task for the MAGE step 'synthesize' (see lethe.mage)."""

from prefect import task

from lethe.config import Params
from lethe.mage import Request
from lethe.pipeline.tasks.mage_step import run_mage_step


@task(name="synthesize", retries=1, retry_delay_seconds=5)
def synthesize(request: Request, workdir: str, params: Params) -> dict:
    """Run the 'synthesize' step for a request; resumable (a finished step is not re-run)."""
    return run_mage_step("synthesize", request, workdir, params)
