"""Prefect task for the MAGE step 'validate' (see lethe.mage)."""

from prefect import task

from lethe.config import Params
from lethe.mage import Request
from lethe.pipeline.tasks.mage_step import run_mage_step


@task(name="validate", retries=0, retry_delay_seconds=5)
def validate(request: Request, workdir: str, params: Params) -> dict:
    """Run the 'validate' step for a request; resumable (a finished step is not re-run)."""
    return run_mage_step("validate", request, workdir, params)
