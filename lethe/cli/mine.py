"""`lethe mine` and `lethe step`: from an anchor to a memory graph and validated QA sets."""

from __future__ import annotations

from pathlib import Path

import typer

from lethe.cli.common import JSON_OPTION, PARAMS_OPTION, emit, stderr, user_errors
from lethe.config import load_params

MODEL_OPTION = typer.Option(None, "--model", help="Target model folder (default: the 'default' world model).")
WORKDIR_OPTION = typer.Option(None, "--workdir", help="Request folder (default: artifacts/requests/<anchor>/<source>).")
SOURCE_OPTION = typer.Option("mage", "--source", help="Forget-set source: mage, gold or directqa.")


def default_model_path(params, size: str = "default") -> Path:
    """The world model of `size`, as recorded by its build (no build is started here)."""
    from lethe.errors import ModelNotFoundError
    from lethe.world.build import read_record

    record = read_record(Path(params.world.output_dir) / size)
    if record is None:
        raise ModelNotFoundError(f"the '{size}' world model is not built yet: run `lethe world build --size {size}`")
    return Path(record["model_path"])


def pipeline_for(anchor: str, description, model, workdir, source, params_path):
    """Validated request + its MagePipeline."""
    from lethe.errors import LetheError
    from lethe.mage import SOURCES, MagePipeline, Request, check_anchor, request_slug

    params = load_params(params_path)
    anchor, description = check_anchor(anchor, description)
    if source not in SOURCES:
        raise LetheError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
    from lethe.llm.loading import check_model

    model_path = check_model(model if model else default_model_path(params), params.backend)
    workdir = workdir or Path("artifacts/requests") / request_slug(anchor) / source
    request = Request(anchor=anchor, model_path=str(model_path.resolve()), source=source, description=description)
    return MagePipeline(request, Path(workdir), params)


def _human(result: dict) -> None:
    stderr.print(f"[bold]{result['anchor']}[/]: {result['status']}")
    if result["status"] == "nothing_memorized":
        stderr.print("  the model recalls nothing about this anchor consistently: there is nothing to unlearn")
        return
    for key in ("graph_path", "graph_png", "forget_set_path", "neighbor_set_path"):
        if result.get(key):
            stderr.print(f"  {key}: {result[key]}")
    if result.get("validation"):
        from lethe.supervision.validate import describe_failures

        stderr.print(f"  validation: {describe_failures(result['validation'])}")


def mine(
    anchor: str = typer.Argument(..., help="Name of the entity (the anchor)."),
    description: str = typer.Option(None, "--description", help="Optional one-sentence description."),
    model: Path = MODEL_OPTION,
    source: str = SOURCE_OPTION,
    workdir: Path = WORKDIR_OPTION,
    until: str = typer.Option("validate", help="Last step to run."),
    params: Path = PARAMS_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Elicit, score, expand, sample, synthesize and validate (resumes a crashed request)."""
    with user_errors(as_json):
        pipeline = pipeline_for(anchor, description, model, workdir, source, params)
        with stderr.status("mining") as status:
            result = pipeline.run(until, on_step=lambda step: status.update(f"MAGE step: {step}"))
    emit(result, as_json, _human)
    if result["status"] == "validation_failed":
        raise typer.Exit(code=3)


def step(
    name: str = typer.Argument(..., help="elicit | score | expand | sample | synthesize | validate"),
    anchor: str = typer.Option(..., "--anchor", help="Name of the entity."),
    description: str = typer.Option(None, "--description"),
    model: Path = MODEL_OPTION,
    source: str = SOURCE_OPTION,
    workdir: Path = WORKDIR_OPTION,
    force: bool = typer.Option(False, help="Re-run even if the step's output exists."),
    params: Path = PARAMS_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Run one MAGE step (what DVC stages and Prefect tasks call)."""
    with user_errors(as_json):
        pipeline = pipeline_for(anchor, description, model, workdir, source, params)
        seconds = pipeline.run_step(name, force=force)
        result = {**pipeline.summary(), "step": name, "step_seconds": seconds}
    emit(result, as_json, _human)
