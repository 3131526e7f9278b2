"""Prefect task for the MAGE step 'synthesize' (see lethe.mage)."""

from prefect import task

from lethe.pipeline.tasks.mage_step import run_mage_step


@task(name="synthesize", retries=1, retry_delay_seconds=5)
def synthesize(request: dict, workdir: str, params_path: str | None = None) -> dict:
    """Run the 'synthesize' step for a request; resumable (a finished step is not re-run)."""
    return run_mage_step("synthesize", request, workdir, params_path)
