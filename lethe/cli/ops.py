"""Operations commands: `forget`, `request`, `promote`, `rollback`, `compliance-run`, `serve`, `stack`."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from lethe.cli.common import JSON_OPTION, PARAMS_OPTION, emit, stderr, tracebacks_to, user_errors
from lethe.cli.mine import MODEL_OPTION
from lethe.config import load_params
from lethe.errors import LetheError, ModelNotFoundError

stack_app = typer.Typer(help="The local S3, MLflow and Prefect servers (and worker) on 127.0.0.1.",
                        no_args_is_help=True)
request_app = typer.Typer(help="The request queue and its audit ledger.", no_args_is_help=True)


def _prefect_home(cfg=None) -> None:
    """Where this process's flow runs go: the local stack's Prefect server when it runs one (and no
    PREFECT_API_URL is set), else Prefect's ephemeral server with its home in .prefect/."""
    if cfg is not None and "PREFECT_API_URL" not in os.environ and cfg.stack.prefect:
        from lethe.ops.registry import tracking_uri_from_env
        from lethe.ops.stack import LocalStack

        if not tracking_uri_from_env(cfg.registry.tracking_uri):
            os.environ.update(LocalStack(cfg.stack).prefect_env())
    os.environ.setdefault("PREFECT_HOME", str(Path(".prefect").resolve()))


def apply_deployments(cfg, params: Path | None, env) -> None:
    """prefect.yaml's deployments on the local stack's Prefect server, templated for these params."""
    from lethe.cli.mine import default_model_path
    from lethe.config import DEFAULT_PARAMS
    from lethe.ops import prefect_service
    from lethe.ops.stack import LocalStack

    stack = LocalStack(cfg.stack)
    prefect_env = stack.prefect_env()
    if not prefect_env:
        raise LetheError("the local stack runs no Prefect server (stack.prefect is false)")
    try:
        base = default_model_path(cfg)
    except ModelNotFoundError:  # not built yet: the scheduled run will find it where the build puts it
        base = Path(cfg.world.output_dir) / "default" / "model"
    prefect_service.deploy(prefect_env, env.to_dict(), str(base.resolve()),
                           str(Path(params or DEFAULT_PARAMS).resolve()), stack.state_dir / "deploy.log")


def _base_model(model: Path | None, cfg) -> Path:
    """The target model folder (checked to be one); enough for commands that only name the model."""
    from lethe.cli.mine import default_model_path
    from lethe.llm.backend import require_model_dir

    return require_model_dir(model if model else default_model_path(cfg))


def _runnable_model(model: Path | None, cfg) -> Path:
    """The target model folder, preflighted (tokenizer, memory) for commands that will run it."""
    from lethe.llm.loading import check_model

    return check_model(_base_model(model, cfg), cfg.backend)


def _checked_request(anchor: str, description: str | None, model: Path | None, cfg) -> tuple[str, str | None, Path]:
    """Clean anchor and description and the base model folder; clear errors before anything starts."""
    from lethe.mage import check_anchor

    base = _runnable_model(model, cfg)
    anchor, description = check_anchor(anchor, description)
    return anchor, description, base


def _request_services(anchor: str, description: str | None, model: Path | None, params: Path | None):
    """(params, clean anchor, description, base model, services) of a request: bad input fails
    before anything starts; then the servers are started and this process's flow runs go to the
    stack's Prefect server."""
    from lethe.ops.environment import resolve

    cfg = load_params(params)
    anchor, description, base = _checked_request(anchor, description, model, cfg)
    with stderr.status("starting the MLflow and S3 servers"):
        env = resolve(cfg)
    _prefect_home(cfg)
    return cfg, anchor, description, base, env


def _registry_target(model: Path | None, params: Path | None):
    """(services, registered model name) of the target model, for alias commands."""
    from lethe.ops.environment import resolve
    from lethe.ops.request_steps import model_name_for

    cfg = load_params(params)
    return resolve(cfg), model_name_for(_base_model(model, cfg), cfg.registry.model_prefix)


def run_request(request_id: str, base_model: Path, env, params: Path | None, cfg) -> dict:
    """Run (or resume) one queued request through its Prefect flow (unlearn_request, or agentic_unlearn
    for an agentic request); a failure is a clear error. `cfg`: the params loaded from `params` (the
    flow loads the file itself)."""
    _prefect_home(cfg)
    from lethe.ops.queue import AGENTIC, RequestQueue
    from lethe.pipeline.flows.agentic_unlearn import agentic_unlearn
    from lethe.pipeline.flows.unlearn_request import unlearn_request

    queue = RequestQueue(env.queue_url)
    params_path = str(params) if params else None
    with tracebacks_to(Path(cfg.registry.workdir) / request_id / "errors.log"):
        if queue.get(request_id).kind == AGENTIC:
            state = agentic_unlearn(request_id, env.to_dict(), params_path, return_state=True)
        else:
            state = unlearn_request(request_id, str(base_model), env.to_dict(), params_path, return_state=True)
    if state.is_failed():
        record = queue.get(request_id)
        error = (record.result or {}).get("error", state.message)
        raise LetheError(f"request {request_id} failed: {error}. It is resumable: run the same command again "
                         f"(or `lethe request retry {request_id}`)")
    result = state.result()
    if result.get("status") == "running_elsewhere":
        raise LetheError(f"request {request_id} is being run by {result.get('lease_owner')}; its lease expires if "
                         "that runner dies, and then any runner takes it over")
    return result


def forget(
    anchor: str = typer.Argument(..., help="Name of the entity to forget."),
    model: Path = MODEL_OPTION,
    description: str = typer.Option(None, "--description", help="One sentence that disambiguates the anchor."),
    requester: str = typer.Option("cli", "--requester", help="Who asks (kept in the audit ledger)."),
    reason: str = typer.Option("right-to-be-forgotten request", "--reason", help="Why (kept in the audit ledger)."),
    params: Path = PARAMS_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Queue one request and run it end to end: mine, unlearn, evaluate, version, gate, register."""
    with user_errors(as_json):
        from lethe.ops.queue import RequestQueue

        cfg, anchor, description, base, env = _request_services(anchor, description, model, params)
        record, created = RequestQueue(env.queue_url).add(anchor, str(base.resolve()), requester, reason,
                                                          description)
        stderr.print(f"request {record.id} ({'new' if created else 'already queued: ' + record.status})")
        result = {**run_request(record.id, base, env, params, cfg), "created": created}
    emit(result, as_json, _summary)


def _summary(r: dict) -> None:
    stderr.print(f"\n[bold]request {r['request_id']}: {r['status']}[/]")
    before, after, reference = r.get("before") or {}, r.get("after") or {}, r.get("reference") or {}
    from lethe.evaluate.metrics import METRICS, keys

    for key in keys(summary=True):
        label = METRICS[key].label
        if key in after:
            ref = f"  (never-trained reference {reference[key]:.3f})" if key in reference else ""
            start = f"{before[key]:.3f} -> " if key in before else ""
            stderr.print(f"  {label}: {start}{after[key]:.3f}{ref}")
    training = r.get("training") or {}
    if training.get("steps"):
        fixed = (training.get("budget") or {}).get("fixed_because")
        met = "fixed budget" if fixed else "dev target " + ("met" if training.get("budget_met") else "not met")
        stderr.print(f"  training: {training['steps']} steps, kept step {training.get('chosen_step')}, {met}"
                     + (f"; {training['note']}" if training.get("note") else ""))
    gate = r.get("gate") or {}
    if gate:
        stderr.print(f"  gate: {'passed' if gate.get('passed') else 'rejected'}"
                     + ("" if gate.get("passed") else ": " + "; ".join(gate.get("reasons", []))))
    if r.get("model_version"):
        stderr.print(f"  {r['model_name']} version {r['model_version']}"
                     f"{' is now champion' if r.get('promoted') else ''}")
    for label, key in (("MLflow UI", "mlflow_ui"), ("report", "report_path"), ("graph", "graph_png")):
        if r.get(key):
            stderr.print(f"  {label}: {r[key]}")


@request_app.command("add")
def request_add(
    anchor: str = typer.Argument(..., help="Name of the entity to forget."),
    requester: str = typer.Option(..., "--requester", help="Who asks."),
    reason: str = typer.Option(..., "--reason", help="Why."),
    description: str = typer.Option(None, "--description"),
    model: Path = MODEL_OPTION,
    agentic: bool = typer.Option(False, "--agentic", help="Forget in the model and its agent's memory (SBU)."),
    memory: Path = typer.Option(None, "--memory", help="With --agentic: the agent's memory file "
                                "(default: <agent.memory_dir>/<model>/memory.db)."),
    params: Path = PARAMS_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Queue a request for the next compliance run (a duplicate joins the existing one)."""
    with user_errors(as_json):
        from lethe.cli.agent import agentic_memory
        from lethe.ops.environment import queue_url
        from lethe.ops.queue import AGENTIC, UNLEARN, RequestQueue

        cfg = load_params(params)
        if memory and not agentic:
            raise LetheError("--memory names an agent's memory: it goes with --agentic")
        anchor, description, base = _checked_request(anchor, description, model, cfg)
        record, created = RequestQueue(queue_url(cfg)).add(
            anchor, str(base.resolve()), requester, reason, description, kind=AGENTIC if agentic else UNLEARN,
            memory=agentic_memory(cfg, base, memory) if agentic else None)
    emit({**record.to_dict(), "created": created}, as_json,
         lambda r: stderr.print(f"{r['id']} {r['status']} {r['anchor']!r}{'' if created else ' (already queued)'}"))


@request_app.command("list")
def request_list(status: str = typer.Option(None, "--status"), params: Path = PARAMS_OPTION,
                 as_json: bool = JSON_OPTION) -> None:
    """Requests, oldest first."""
    with user_errors(as_json):
        from lethe.ops.environment import queue_url
        from lethe.ops.queue import RequestQueue

        records = [r.to_dict() for r in RequestQueue(queue_url(load_params(params))).list(status)]

    def human(result: dict) -> None:
        for r in result["requests"]:
            stderr.print(f"{r['id']}  {r['kind']:<8} {r['status']:<17} {r['created_at']}  {r['anchor']}")

    emit({"requests": records}, as_json, human)


@request_app.command("show")
def request_show(request_id: str, params: Path = PARAMS_OPTION, as_json: bool = JSON_OPTION) -> None:
    """One request with its audit trail."""
    with user_errors(as_json):
        from lethe.ops.environment import queue_url
        from lethe.ops.queue import RequestQueue

        queue = RequestQueue(queue_url(load_params(params)))
        result = {**queue.get(request_id).to_dict(), "audit": queue.audit_log(request_id)}

    def human(r: dict) -> None:
        stderr.print(f"{r['id']} {r['status']} {r['anchor']!r} by {r['requester']}: {r['reason']}")
        for event in r["audit"]:
            stderr.print(f"  {event['at']} {event['event']} {event['detail']}")

    emit(result, as_json, human)


def promote(version: str = typer.Argument(..., help="Model version to make champion."),
            model: Path = MODEL_OPTION, actor: str = typer.Option("cli", "--actor"),
            params: Path = PARAMS_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Promote a version whose gate decision in the audit ledger passed (a version tag alone is not
    trusted: anyone who reaches the tracking server can set one)."""
    with user_errors(as_json):
        from lethe.ops import registry
        from lethe.ops.queue import RequestQueue

        env, name = _registry_target(model, params)
        queue = RequestQueue(env.queue_url)
        client = registry.client(env.tracking_uri)
        registry.get_version(client, name, version)
        verdict = queue.gate_verdict(name, version)
        if verdict != "passed":
            raise LetheError(f"{name} version {version} has no passing gate decision in the audit ledger "
                             f"({verdict or 'none recorded'}); it cannot become champion")
        previous = registry.promote(client, name, version)
        queue.audit("alias_moved", actor=actor, detail={
            "alias": "champion", "model": name, "version": version, "previous": previous, "by": "promote"})
    emit({"model_name": name, "champion": version, "previous_champion": previous}, as_json,
         lambda r: stderr.print(f"{name}: champion is version {version} (was {previous})"))


def rollback(model: Path = MODEL_OPTION, actor: str = typer.Option("cli", "--actor"),
             params: Path = PARAMS_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Point `champion` back at the version it replaced. The requests whose forgetting that drops are
    marked superseded and queued again, so the next compliance run forgets them again."""
    with user_errors(as_json):
        from lethe.ops import registry
        from lethe.ops.compliance import version_requests
        from lethe.ops.queue import COMPLETED, SUPERSEDED, RequestQueue

        env, name = _registry_target(model, params)
        client = registry.client(env.tracking_uri)
        queue = RequestQueue(env.queue_url)
        old, new = registry.rollback(client, name)
        queue.audit("alias_moved", actor=actor, detail={
            "alias": "champion", "model": name, "version": new, "previous": old, "by": "rollback"})
        requeued = []
        for dropped in registry.versions_between(client, name, old, new):
            for request_id, _ in version_requests(dropped):  # a batched version: each of its requests
                record = queue.get(request_id) if request_id else None
                if record is None or record.status != COMPLETED:
                    continue
                queue.transition(request_id, SUPERSEDED, actor=actor, detail={"rolled_back": dropped.version})
                again, _ = queue.add(record.anchor, record.model, record.requester,
                                     f"re-queued: version {dropped.version} was rolled back ({record.reason})")
                requeued.append({"superseded": request_id, "requeued": again.id, "anchor": record.anchor})
    emit({"model_name": name, "champion": new, "rolled_back": old, "requeued": requeued}, as_json,
         lambda r: stderr.print(f"{name}: champion rolled back from version {old} to {new}; "
                                f"{len(requeued)} request(s) queued again"))


@request_app.command("retry")
def request_retry(request_id: str, model: Path = MODEL_OPTION, params: Path = PARAMS_OPTION,
                  as_json: bool = JSON_OPTION) -> None:
    """Run a failed (or pending) request again now; it re-plans from the current champion."""
    with user_errors(as_json):
        from lethe.ops.environment import resolve
        from lethe.ops.queue import FAILED, PENDING, RequestQueue

        cfg = load_params(params)
        env = resolve(cfg)
        record = RequestQueue(env.queue_url).get(request_id)
        if record.status not in (FAILED, PENDING):
            raise LetheError(f"request {request_id} is {record.status}; only failed or pending requests are retried")
        result = run_request(request_id, Path(record.model), env, params, cfg)
    emit(result, as_json, _summary)


@request_app.command("cancel")
def request_cancel(request_id: str, actor: str = typer.Option("cli", "--actor"), params: Path = PARAMS_OPTION,
                   as_json: bool = JSON_OPTION) -> None:
    """Cancel a pending or failed request (the ledger keeps who and when)."""
    with user_errors(as_json):
        from lethe.ops.environment import queue_url
        from lethe.ops.queue import CANCELLED, RequestQueue

        record = RequestQueue(queue_url(load_params(params))).transition(request_id, CANCELLED, actor=actor)
    emit(record.to_dict(), as_json, lambda r: stderr.print(f"{r['id']} cancelled"))


def compliance_run_command(model: Path = MODEL_OPTION, params: Path = PARAMS_OPTION,
                           worker: bool = typer.Option(False, "--worker", help=(
                               "Run it as a deployment run on the local stack's Prefect worker (the process "
                               "a schedule would use) instead of in this command.")),
                           batch: bool = typer.Option(None, "--batch/--no-batch", help=(
                               "Unlearn the pending requests of the model in one adapter, one gate with a "
                               "forgetting row per entity (default: scale.batch_requests).")),
                           as_json: bool = JSON_OPTION) -> None:
    """Process every pending request, then re-audit the champion against every forgotten entity (and
    the live agent against every entity agentic requests removed)."""
    with user_errors(as_json):
        from lethe.ops.environment import resolve

        cfg = load_params(params)
        env = resolve(cfg)
        _prefect_home(cfg)
        base = _runnable_model(model, cfg)
        if worker:
            result = _compliance_run_on_worker(cfg, params, env, base, batch)
        else:
            from lethe.pipeline.flows.compliance_run import compliance_run

            result = compliance_run(str(base), env.to_dict(), str(params) if params else None, batch)

    def human(r: dict) -> None:
        from lethe.evaluate.metrics import REELICIT_RETURN

        stderr.print(f"processed {len(r['processed'])} request(s); report: {r['report_path']}")
        for row in r["audit"]["entities"]:
            stderr.print(f"  {row['anchor']}: {'forgotten' if row['forgotten'] else 'NOT forgotten'} "
                         f"(held-out recall {row['base_recall']:.3f} -> {row['champion_recall']:.3f}, "
                         f"re-elicited {row[REELICIT_RETURN]})")
        kept = r["audit"].get("kept") or {}
        if kept.get("kept") is not None:
            stderr.print(f"  entities to keep: {'still recognized' if kept['kept'] else 'NOT all recognized'} "
                         f"({kept['note']})")
        for row in r["agent_audit"]["entities"]:
            stderr.print(f"  {row['anchor']} (agent): {'forgotten' if row['forgotten'] else 'NOT forgotten'} "
                         f"(retrieval leak {row['retrieval_leak']}, generation leak {row['generation_leak']})")

    emit(result, as_json, human)


def _compliance_run_on_worker(cfg, params: Path | None, env, base: Path, batch: bool | None) -> dict:
    """Apply the deployments, start a run of the compliance deployment, wait for the worker to end it."""
    from prefect.deployments import run_deployment

    from lethe.ops import prefect_service

    apply_deployments(cfg, params, env)
    run = run_deployment(prefect_service.COMPLIANCE_DEPLOYMENT, timeout=None,
                         parameters={"base_model": str(base.resolve()),
                                     **({"batch": batch} if batch is not None else {})})
    if not run.state.is_completed():
        raise LetheError(f"the compliance run {run.id} ended {run.state.name} on the worker: {run.state.message}")
    result = run.state.result()
    return {**result, "flow_run_id": str(run.id), "state": run.state.name, "work_pool": run.work_pool_name,
            "prefect_ui": os.environ["PREFECT_API_URL"].removesuffix("/api") + f"/runs/flow-run/{run.id}"}


def serve(model: Path = MODEL_OPTION, params: Path = PARAMS_OPTION,
          cron: str = typer.Option(None, "--cron", help="Override the schedule (default: stack.schedule_cron).")) -> None:
    """Serve the scheduled compliance run locally (a Prefect runner; Ctrl-C stops it)."""
    with user_errors(False):
        _prefect_home()
        from lethe.ops.environment import resolve
        from lethe.pipeline.flows.compliance_run import compliance_run

        cfg = load_params(params)
        env = resolve(cfg)
        base = _base_model(model, cfg)
        stderr.print(f"serving compliance-run on cron {cron or cfg.stack.schedule_cron} ({cfg.stack.timezone})")
        compliance_run.serve(name="compliance-run", cron=cron or cfg.stack.schedule_cron,
                             parameters={"base_model": str(base), "ops": env.to_dict(),
                                         "params_path": str(params) if params else None})


@stack_app.command("up")
def stack_up(params: Path = PARAMS_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Start (or find) the local servers: S3 (SeaweedFS by default), MLflow (SQLite store), and a Prefect
    server with a process worker and prefect.yaml's deployments applied."""
    with user_errors(as_json):
        from dataclasses import asdict

        from lethe.ops.environment import resolve
        from lethe.ops.stack import LocalStack

        cfg = load_params(params)
        with stderr.status("starting"):
            info = asdict(LocalStack(cfg.stack).up())
            if info["prefect_api_url"]:
                apply_deployments(cfg, params, resolve(cfg))
    emit(info, as_json, lambda r: stderr.print(
        f"MLflow UI: {r['tracking_uri']}  S3: {r['s3_endpoint']}"
        + (f"  Prefect UI: {r['prefect_api_url'].removesuffix('/api')} (worker pid {r['worker_pid']})"
           if r["prefect_api_url"] else "")))


@stack_app.command("down")
def stack_down(params: Path = PARAMS_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Stop the local servers (SeaweedFS objects and the SQLite store stay on disk; moto's are lost)."""
    with user_errors(as_json):
        from lethe.ops.stack import LocalStack

        stopped = LocalStack(load_params(params).stack).down()
    emit({"stopped": stopped}, as_json, lambda r: stderr.print("stopped" if stopped else "nothing was running"))


@stack_app.command("status")
def stack_status(params: Path = PARAMS_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Whether the local servers are up, and where."""
    with user_errors(as_json):
        from dataclasses import asdict

        from lethe.ops.stack import LocalStack

        info = LocalStack(load_params(params).stack).info()
    emit({"running": info is not None, **(asdict(info) if info else {})}, as_json,
         lambda r: stderr.print(f"up: {r['tracking_uri']}" if r["running"] else "down"))
