"""Agentic unlearning commands: `agentic-forget` and `memory seed/search/restore`."""

from __future__ import annotations

from pathlib import Path

import typer

from lethe.cli.common import JSON_OPTION, PARAMS_OPTION, emit, stderr, user_errors
from lethe.cli.mine import MODEL_OPTION
from lethe.config import load_params
from lethe.errors import LetheError

memory_app = typer.Typer(help="The agent's persistent memory (records, summaries, retrieval index).",
                         no_args_is_help=True)
MEMORY_OPTION = typer.Option(None, "--memory", help="Memory file (default: <agent.memory_dir>/<model>/memory.db).")


def _model_and_memory(model: Path | None, memory: Path | None, cfg) -> tuple[Path, Path]:
    from lethe.cli.ops import _base_model
    from lethe.ops.agentic_steps import memory_path_for

    base = _base_model(model, cfg)
    return base, memory if memory else memory_path_for(cfg, base)


def _memory_path(model: Path | None, memory: Path | None, cfg) -> Path:
    """The memory file: --memory as given, else the target model's (which then must exist)."""
    return memory if memory else _model_and_memory(model, None, cfg)[1]


@memory_app.command("seed")
def memory_seed(model: Path = MODEL_OPTION, memory: Path = MEMORY_OPTION, params: Path = PARAMS_OPTION,
                as_json: bool = JSON_OPTION) -> None:
    """Seed the agent's memory for a model: notes, facts, profiles and multi-author summaries."""
    with user_errors(as_json):
        from lethe.ops.agentic_steps import ensure_memory

        cfg = load_params(params)
        base, path = _model_and_memory(model, memory, cfg)
        result = ensure_memory(cfg, base, path)
    emit(result, as_json, lambda r: stderr.print(
        f"memory {r['path']}: {r['items']} items {r['by_kind']}, {r['derived_multi_source']} derived from several "
        f"sources{' (seeded now)' if r['seeded_now'] else ' (already seeded)'}"))


@memory_app.command("search")
def memory_search(query: str = typer.Argument(..., help="What to retrieve."), k: int = typer.Option(
        None, "-k", help="Hits (default: agent.retrieve_k)."), model: Path = MODEL_OPTION,
        memory: Path = MEMORY_OPTION, params: Path = PARAMS_OPTION, as_json: bool = JSON_OPTION) -> None:
    """What the agent's retrieval returns for a query (BM25 over active items)."""
    with user_errors(as_json):
        from lethe.agent.memory import MemoryStore

        cfg = load_params(params)
        if not query.strip():
            raise LetheError("the query is empty")
        memory = _memory_path(model, memory, cfg)
        with MemoryStore(memory, create=False) as store:
            hits = store.search(query, k or cfg.agent.retrieve_k)
        result = {"query": query, "memory_path": str(memory), "hits": [h.to_dict() for h in hits]}
    emit(result, as_json, lambda r: [stderr.print(f"[{h['id']}] {h['kind']} ({h['score']:.2f}): {h['text']}")
                                     for h in r["hits"]] or stderr.print("no hits"))


@memory_app.command("restore")
def memory_restore(request_id: str = typer.Argument(..., help="Agentic request id (from agentic-forget)."),
                   which: str = typer.Option("before", "--which", help="before or after the unlearning."),
                   model: Path = MODEL_OPTION, memory: Path = MEMORY_OPTION, params: Path = PARAMS_OPTION,
                   as_json: bool = JSON_OPTION) -> None:
    """Put a DVC-versioned memory back as the agent's live memory (reverses or replays an unlearning)."""
    with user_errors(as_json):
        from lethe.ops.agentic_steps import restore_memory
        from lethe.ops.environment import resolve

        cfg = load_params(params)
        path = _memory_path(model, memory, cfg)
        result = restore_memory(resolve(cfg).store(), request_id, which, path)
    emit(result, as_json, lambda r: stderr.print(f"restored memory {r['which']} of {r['request_id']} to "
                                                 f"{r['memory_path']} ({r['items']} items, md5 {r['md5']})"))


def agentic_memory(cfg, base: Path, memory: Path | None) -> str:
    """The agent memory an agentic request names: --memory, else the target model's (absolute)."""
    from lethe.ops.agentic_steps import memory_path_for

    return str((memory if memory else memory_path_for(cfg, base)).resolve())


def agentic_forget(
    anchor: str = typer.Argument(..., help="Name of the entity to forget in the model and the agent's memory."),
    model: Path = MODEL_OPTION,
    memory: Path = MEMORY_OPTION,
    requester: str = typer.Option("cli", "--requester", help="Who asks (kept in the audit ledger)."),
    reason: str = typer.Option("right-to-be-forgotten request", "--reason", help="Why (kept in the audit ledger)."),
    params: Path = PARAMS_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """SBU: queue an agentic request and run it: mine, then synchronized memory + parameter unlearning
    with a backflow audit; register both."""
    with user_errors(as_json):
        from lethe.cli.ops import _request_services, run_request
        from lethe.ops.queue import AGENTIC, RequestQueue

        cfg, anchor, _, base, env = _request_services(anchor, None, model, params)
        memory_file = agentic_memory(cfg, base, memory)
        record, created = RequestQueue(env.queue_url).add(anchor, str(base.resolve()), requester, reason,
                                                          kind=AGENTIC, memory=memory_file)
        if record.memory != memory_file:
            raise LetheError(f"{anchor!r} is already queued as {record.id} for the agent memory {record.memory}; "
                             "cancel it (`lethe request cancel`) to forget it in another memory")
        stderr.print(f"agentic request {record.id} ({'new' if created else 'already queued: ' + record.status})")
        result = {**run_request(record.id, base, env, params, cfg), "created": created}
    emit(result, as_json, _summary)


def _summary(r: dict) -> None:
    stderr.print(f"\n[bold]agentic request {r['request_id']}[/]")
    stderr.print("  leak rates (retrieval / generation):")
    for variant, rates in r["leak_rates"].items():
        stderr.print(f"    {variant:16s} {rates['retrieval']:.3f} / {rates['generation']:.3f}")
    if r.get("retain_quality_ratio") is not None:
        stderr.print(f"  retain answer quality: {r['retain_quality_ratio']:.3f}x of before")
    stderr.print(f"  gate: {'passed' if r['gate']['passed'] else 'rejected: ' + '; '.join(r['gate']['reasons'])}")
    stderr.print(f"  {r['model_name']} version {r['model_version']}{' is now champion' if r['promoted'] else ''}")
    for label, key in (("adapter", "adapter_path"), ("memory", "memory_path"), ("MLflow UI", "mlflow_ui"),
                       ("report", "report_path")):
        stderr.print(f"  {label}: {r[key]}")
