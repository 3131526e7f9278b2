"""MLflow: one run per request, one registered model per target model, aliases as the gate says.

Every call takes the run id explicitly (MLflow's active run is thread-local, Prefect tasks may run
in other threads). A version is created in one call that carries all its lineage and gate tags,
so it is never half-registered; a resumed request finds its run and its version by the
`lethe.request_id` tag instead of creating new ones. MLflow keeps no alias history: every alias
move is written to the version's tags and to the audit ledger.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lethe import failpoints
from lethe.errors import LetheError

CHAMPION, CHALLENGER = "champion", "challenger"
MODEL_CODE = Path(__file__).with_name("mlflow_model.py")


def client(tracking_uri: str):
    """An MlflowClient bound to `tracking_uri` (also set process-wide for fluent calls)."""
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(tracking_uri)
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def experiment_id(mlflow_client, name: str) -> str:
    """The experiment's id, created on first use."""
    found = mlflow_client.get_experiment_by_name(name)
    return found.experiment_id if found else mlflow_client.create_experiment(name)


def find_run(mlflow_client, experiment: str, request_id: str):
    """The run of a request, or None."""
    runs = mlflow_client.search_runs([experiment_id(mlflow_client, experiment)],
                                     filter_string=f"tags.`lethe.request_id` = '{request_id}'", max_results=2)
    return runs[0] if runs else None


def start_run(mlflow_client, experiment: str, request_id: str, tags: Mapping[str, str]) -> str:
    """Run id of the request's run, created once (a resumed or resubmitted request reuses it)."""
    existing = find_run(mlflow_client, experiment, request_id)
    if existing:
        return existing.info.run_id
    run = mlflow_client.create_run(experiment_id(mlflow_client, experiment),
                                   tags={"lethe.request_id": request_id, **tags}, run_name=request_id)
    return run.info.run_id


def flatten(prefix: str, value: Any) -> dict[str, str]:
    """Nested params as dotted keys (MLflow params are flat strings, 6000 chars at most)."""
    if isinstance(value, Mapping):
        out: dict[str, str] = {}
        for key, item in value.items():
            out.update(flatten(f"{prefix}.{key}" if prefix else str(key), item))
        return out
    return {prefix: json.dumps(value)[:6000] if not isinstance(value, str) else value[:6000]}


def log_params(mlflow_client, run_id: str, params: Mapping[str, str]) -> None:
    """Log params in batches; a resumed run skips the ones already logged."""
    from mlflow.entities import Param

    logged = mlflow_client.get_run(run_id).data.params
    items = [Param(k, v) for k, v in params.items() if k not in logged]
    for start in range(0, len(items), 100):
        mlflow_client.log_batch(run_id, params=items[start:start + 100])


def log_metrics(mlflow_client, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
    """Numeric metrics only (lists and strings stay in the JSON artifacts)."""
    import time

    from mlflow.entities import Metric

    stamp = int(time.time() * 1000)
    items = [Metric(k, float(v), stamp, step) for k, v in metrics.items()
             if isinstance(v, (int, float)) and not isinstance(v, bool)]
    for start in range(0, len(items), 500):
        mlflow_client.log_batch(run_id, metrics=items[start:start + 500])


@dataclass(frozen=True)
class DatasetRef:
    """A dataset logged as a run input: its rows, the DVC md5 as digest, and the remote URL."""

    name: str
    context: str
    path: Path
    md5: str
    source: str


def log_datasets(run_id: str, datasets: Sequence[DatasetRef]) -> None:
    """Log JSONL datasets as inputs of the run (digest = DVC md5)."""
    import mlflow
    import pandas as pd

    with mlflow.start_run(run_id=run_id):
        for ds in datasets:
            frame = pd.read_json(ds.path, lines=True) if ds.path.suffix == ".jsonl" else pd.DataFrame()
            dataset = mlflow.data.from_pandas(frame, source=ds.source, name=ds.name, digest=ds.md5)
            mlflow.log_input(dataset, context=ds.context)


def log_model(run_id: str, adapters: Sequence[Path], base_model: Path, max_new_tokens: int):
    """Log the unlearned model (base folder + adapter chain) as a pyfunc; returns its ModelInfo."""
    import mlflow

    with mlflow.start_run(run_id=run_id):
        return mlflow.pyfunc.log_model(
            name="model", python_model=str(MODEL_CODE),
            artifacts={f"adapter_{i:02d}": str(a) for i, a in enumerate(adapters)},
            model_config={"base_model_path": str(Path(base_model).resolve()), "max_new_tokens": max_new_tokens},
            pip_requirements=["torch", "transformers", "peft", "pandas"])


def find_version(mlflow_client, model_name: str, request_id: str, start_model_hash: str | None = None):
    """The registered version of a request (planned from that starting model, when given), or None."""
    from mlflow.exceptions import MlflowException

    try:
        versions = mlflow_client.search_model_versions(f"name = '{model_name}'")
    except MlflowException:
        return None
    matches = [v for v in versions if v.tags.get("lineage.request_id") == request_id
               and (start_model_hash is None or v.tags.get("lineage.start_model_hash") == start_model_hash)]
    return matches[0] if matches else None


def register_version(mlflow_client, model_name: str, run_id: str, model_info, tags: Mapping[str, str],
                     description: str | None = None):
    """Create the version with every tag and its description in one call (idempotent per request id)."""
    from mlflow.exceptions import MlflowException

    existing = find_version(mlflow_client, model_name, tags["lineage.request_id"], tags.get("lineage.start_model_hash"))
    if existing:
        return existing
    try:
        mlflow_client.get_registered_model(model_name)
    except MlflowException:
        mlflow_client.create_registered_model(model_name, tags={"lethe.kind": "unlearned model chain"})
    return mlflow_client.create_model_version(model_name, source=model_info.model_uri, run_id=run_id,
                                              tags=dict(tags), description=description,
                                              model_id=model_info.model_id)


def alias_version(mlflow_client, model_name: str, alias: str):
    """The version an alias points at, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return mlflow_client.get_model_version_by_alias(model_name, alias)
    except MlflowException:
        return None


def champion_chain(mlflow_client, model_name: str) -> tuple[Any, list[str]]:
    """(the champion version or None, its adapter chain: the adapters a request starting from it composes)."""
    champion = alias_version(mlflow_client, model_name, CHAMPION)
    return champion, adapter_chain(champion)


def adapter_chain(version) -> list[str]:
    """The adapters a request starting from this version composes ([] for no version: the base)."""
    return json.loads(version.tags["lineage.adapter_chain"]) if version is not None else []


def get_version(mlflow_client, model_name: str, version: str):
    """One model version, or a clear error naming what exists."""
    from mlflow.exceptions import MlflowException

    try:
        return mlflow_client.get_model_version(model_name, str(version))
    except MlflowException as exc:
        raise LetheError(f"{model_name} has no version {version!r} (see the MLflow UI or `lethe request list`)") from exc


def register_once(mlflow_client, model_name: str, run_id: str, tags: Mapping[str, str], description: str,
                  log: Callable[[], Any]):
    """The request's model version, plain or agentic: found by request id (and starting model) when a
    retry or a resumed request already made it; else `log()` logs the model and the version is
    created with every tag and its description in one call (never a version without its gate table)."""
    existing = find_version(mlflow_client, model_name, tags["lineage.request_id"], tags.get("lineage.start_model_hash"))
    if existing is not None:
        return existing
    model_info = log()
    failpoints.reach("register.logged")
    version = register_version(mlflow_client, model_name, run_id, model_info, tags, description=description)
    failpoints.reach("register.versioned")
    return version


def version_url(tracking_uri: str, model_name: str, version: str) -> str:
    """The model version's page in the MLflow UI."""
    return f"{tracking_uri}/#/models/{model_name}/versions/{version}"


def promote(mlflow_client, model_name: str, version: str) -> str | None:
    """Make `version` the champion; returns the previous champion's version (recorded on the new one)."""
    target = get_version(mlflow_client, model_name, version)
    if target.tags.get("gate.status") != "passed":
        raise LetheError(f"{model_name} version {version} did not pass the gate "
                         f"({target.tags.get('gate.status', 'no gate result')}); it cannot become champion")
    previous = alias_version(mlflow_client, model_name, CHAMPION)
    if previous and previous.version == str(version):
        return previous.version
    mlflow_client.set_model_version_tag(model_name, version, "promotion.previous_champion",
                                        previous.version if previous else "none")
    mlflow_client.set_registered_model_alias(model_name, CHAMPION, version)
    challenger = alias_version(mlflow_client, model_name, CHALLENGER)
    if challenger and challenger.version == str(version):
        mlflow_client.delete_registered_model_alias(model_name, CHALLENGER)
    return previous.version if previous else None


def rollback(mlflow_client, model_name: str) -> tuple[str, str]:
    """Point `champion` back at the version it replaced; returns (from, to)."""
    current = alias_version(mlflow_client, model_name, CHAMPION)
    if current is None:
        raise LetheError(f"{model_name} has no champion to roll back")
    previous = current.tags.get("promotion.previous_champion", "none")
    if previous == "none":
        raise LetheError(f"{model_name} version {current.version} was the first champion; nothing to roll back to")
    mlflow_client.set_registered_model_alias(model_name, CHAMPION, previous)
    mlflow_client.set_model_version_tag(model_name, current.version, "promotion.rolled_back", "true")
    return current.version, previous


def versions_between(mlflow_client, model_name: str, old: str, new: str) -> list[Any]:
    """Versions on the champion's parent chain from `old` back to (not including) `new`: what a
    rollback from `old` to `new` un-forgets."""
    dropped, version = [], get_version(mlflow_client, model_name, old)
    while version is not None and version.version != str(new):
        dropped.append(version)
        parent = version.tags.get("lineage.parent_version", "none")
        version = get_version(mlflow_client, model_name, parent) if parent != "none" else None
    return dropped


def tracking_uri_from_env(configured: str) -> str | None:
    """LETHE_TRACKING_URI, else the configured URI; None means 'use the local stack'."""
    return os.environ.get("LETHE_TRACKING_URI") or configured or None
