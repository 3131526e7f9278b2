"""Prefect task for the MAGE step 'elicit' (see lethe.mage)."""

from prefect import task

from lethe.config import Params
from lethe.mage import Request
from lethe.pipeline.tasks.mage_step import run_mage_step


@task(name="elicit", retries=1, retry_delay_seconds=5)
def elicit(request: Request, workdir: str, params: Params) -> dict:
    """Run the 'elicit' step for a request; resumable (a finished step is not re-run)."""
    return run_mage_step("elicit", request, workdir, params)
