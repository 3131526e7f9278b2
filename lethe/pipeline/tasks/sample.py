"""Prefect task for the MAGE step 'sample' (see lethe.mage)."""

from prefect import task

from lethe.config import Params
from lethe.mage import Request
from lethe.pipeline.tasks.mage_step import run_mage_step


@task(name="sample", retries=0, retry_delay_seconds=5)
def sample(request: Request, workdir: str, params: Params) -> dict:
    """Run the 'sample' step for a request; resumable (a finished step is not re-run)."""
    return run_mage_step("sample", request, workdir, params)
