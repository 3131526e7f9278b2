"""`lethe world`: build the embedded default world model and show what it knows."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from lethe.cli.common import JSON_OPTION, PARAMS_OPTION, emit, progress_bars, stderr, user_errors
from lethe.config import load_params

app = typer.Typer(help="The embedded default: a Llama trained from scratch on TOFU authors.")


@app.command("build")
def build(
    size: str = typer.Option("default", help="World size from params.yaml (tiny or default)."),
    force: bool = typer.Option(False, help="Rebuild even if a cached build matches."),
    params: Path = PARAMS_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Train the tokenizer, the world model and its retain model (cached by parameters)."""
    with user_errors(as_json):
        from lethe.world.build import build_world

        cfg = load_params(params)
        with progress_bars() as factory:
            record = build_world(cfg, size, force=force, progress=factory)

    def human(r: dict) -> None:
        state = "reused cached build" if r["reused"] else f"built in {r['build_seconds']:.0f} s"
        stderr.print(f"world [bold]{r['size']}[/]: {state}")
        stderr.print(f"  model:        {r['model_path']}\n  retain model: {r['retain_model_path']}")
        forget = [a["name"] for a in r["authors"] if a["split"] == "forget"]
        stderr.print(f"  {len(r['authors'])} authors, forget authors: {', '.join(forget)}")

    emit(record, as_json, human)


@app.command("probe")
def probe(
    size: str = typer.Option("default", help="World size to probe (must be built)."),
    holdout: str = typer.Option("holdout05", help="Never-trained authors to compare with."),
    examples: int = typer.Option(3, help="Example answers to show per model."),
    params: Path = PARAMS_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Show what the world model and its retain model remember (ROUGE-L recall of greedy answers)."""
    with user_errors(as_json):
        from lethe.data import author_qa
        from lethe.llm.backend import Backend
        from lethe.world.build import build_world
        from lethe.world.probe import memorization_report

        cfg = load_params(params)
        record = build_world(cfg, size)
        result = {"size": size}
        for key in ("model_path", "retain_model_path"):
            backend = Backend.from_params(record[key], cfg.backend)
            report = memorization_report(backend, record["authors"], holdout, cfg.backend.max_new_tokens)
            questions = [author_qa(a["index"])[2] for a in record["authors"][:examples]]
            answers = backend.greedy([q.question for q in questions], cfg.backend.max_new_tokens)
            report["examples"] = [
                {"question": q.question, "gold": q.answer, "answer": a} for q, a in zip(questions, answers)
            ]
            result[key.removesuffix("_path")] = report

    def human(r: dict) -> None:
        table = Table(title=f"What the '{size}' world remembers (mean ROUGE-L recall of greedy answers)")
        for column in ("model", "forget authors", "retain authors", "holdout (never trained)"):
            table.add_column(column)
        for name in ("model", "retain_model"):
            m = r[name]
            table.add_row(name, f"{m['forget_authors']:.3f}", f"{m['retain_authors']:.3f}", f"{m['holdout_authors']:.3f}")
        stderr.print(table)
        for example in r["model"]["examples"]:
            stderr.print(f"[bold]Q:[/] {example['question']}\n[bold]A:[/] {example['answer']}\n")

    emit(result, as_json, human)
