"""Mining ahead: a compliance run mines every queued request at once, before the requests run.

Requests on one model run one after another (each trains from the champion the previous one left),
but mining only reads a model. So the compliance run first mines every pending request in parallel
(on Dask, lethe.pipeline.flows.compliance_run), each from the champion its model has when the run
starts, into the folder the request would use from that champion. The first request of the chain,
or every request when none is promoted, finds its supervision in place.

A request that plans from a newer champion (the requests ahead of it were promoted) adopts what was
mined ahead: the folder is copied into its own work folder and the request says which model it was
mined on (`RequestPlan.mined_on`, the version's `lineage.mining_model_hash`, a `mining_adopted`
ledger event). That is the trade the fan-out makes: the entity's supervision describes what the
champion knew at the start of the run, before the requests ahead of it removed other entities.
Its unlearning, evaluation and gate still run on the model it starts from.

A mining that fails ahead leaves no marker: the request then mines by itself when it runs.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lethe.config import Params
from lethe.errors import LetheError
from lethe.fileio import write_atomic
from lethe.layout import MineLayout, RequestLayout
from lethe.llm.cache import ModelCache
from lethe.ops import registry
from lethe.ops.compose import compose
from lethe.ops.environment import OpsEnv
from lethe.ops.failures import explain
from lethe.ops.request_steps import RequestPlan, model_name_for, request_workdir

MARKER = "mined_ahead.json"  # in <registry.workdir>/<request id>/, written once a mining ahead finished
_FINISHED = ("validated", "validation_failed", "nothing_memorized")


@dataclass(frozen=True)
class MiningJob:
    """One request to mine ahead: from which model, into which folder."""

    request_id: str
    anchor: str
    champion: str | None  # the champion version mined from (None: the base model)
    mine_model: str
    mine_dir: str


def marker_path(workdir_root: str | Path, request_id: str) -> Path:
    """Where a request's finished mining ahead is recorded."""
    return Path(workdir_root) / request_id / MARKER


def plan_mining(params: Params, env: OpsEnv, records: list[Any]) -> tuple[list[MiningJob], list[dict[str, str]]]:
    """The jobs of the queued `records` (queue rows), each from its model's current champion (composed
    here, once per model), and the records skipped with the reason. A request whose folder for that
    champion is already validated (a resumed request) needs no job."""
    cfg = params.registry
    client = registry.client(env.tracking_uri)
    starts: dict[str, tuple[str | None, list[str], Path] | str] = {}
    jobs, skipped = [], []
    for record in records:
        if record.model not in starts:
            try:
                champion, chain = registry.champion_chain(client, model_name_for(record.model, cfg.model_prefix))
                starts[record.model] = (champion.version if champion else None, chain,
                                        compose(record.model, chain, Path(cfg.workdir) / "_composed"))
            except LetheError as exc:  # the request's own flow fails on it with the same message
                starts[record.model] = str(exc)
        start = starts[record.model]
        if isinstance(start, str):
            skipped.append({"request_id": record.id, "reason": start})
            continue
        version, chain, model = start
        folder = RequestLayout(request_workdir(cfg.workdir, record.id, chain)).mine
        if folder.validation.is_file():
            skipped.append({"request_id": record.id, "reason": "already mined from this champion"})
            continue
        jobs.append(MiningJob(record.id, record.anchor, version, str(model), str(folder.root)))
    return jobs, skipped


def mine(params: Params, job: MiningJob, models: ModelCache | None = None) -> dict[str, Any]:
    """Run MAGE for one job (resumable, like any mining) and record it as mined ahead; `models` keeps
    the model loaded for the next job. A failure is returned, not raised: the request will mine by
    itself."""
    from lethe.mage import MagePipeline, Request

    started = time.perf_counter()
    row = {"request_id": job.request_id, "anchor": job.anchor, "champion": job.champion}
    try:
        backend = models.get(job.mine_model) if models is not None else None
        # As in a request's own run: the description never goes into prompts.
        summary = MagePipeline(Request(job.anchor, job.mine_model, "mage", None), Path(job.mine_dir), params,
                               backend).run()
    except Exception as exc:  # noqa: BLE001 - any failure ahead only means the request mines later
        return {**row, "status": "failed", "error": explain(exc), "seconds": time.perf_counter() - started}
    write_atomic(marker_path(params.registry.workdir, job.request_id), json.dumps(
        {"mine_dir": job.mine_dir, "mine_model": job.mine_model, "champion": job.champion,
         "status": summary["status"]}, indent=1))
    return {**row, "status": summary["status"], "seconds": time.perf_counter() - started}


def adopt(params: Params, plan: RequestPlan) -> str | None:
    """The model the request's supervision is (or will be) mined on, when it is not the plan's start
    model: a mining folder already begun from another model, or the folder mined ahead, copied now
    into the request's work folder. None: the request mines from its start model."""
    target = plan.mine
    if target.request.is_file():  # begun here already: by the request itself, or mined ahead in place
        mined_on = json.loads(target.request.read_text())["model_path"]
        return mined_on if mined_on != plan.start_model else None
    marker = marker_path(params.registry.workdir, plan.request_id)
    if not marker.is_file():
        return None
    ahead = json.loads(marker.read_text())
    source = MineLayout(Path(ahead["mine_dir"]))
    if ahead["status"] not in _FINISHED or not source.request.is_file():
        return None
    staging = target.root.with_name(target.root.name + ".partial")
    if staging.exists():
        shutil.rmtree(staging)
    shutil.copytree(source.root, staging)
    validation = MineLayout(staging).validation
    if validation.is_file():  # it names its Data Docs by absolute path
        validation.write_text(validation.read_text().replace(str(source.root), str(target.root)))
    staging.rename(target.root)
    return ahead["mine_model"]
