"""Shared CLI plumbing: one JSON object on stdout with --json, logs and progress on stderr,
and one clear line (no traceback) for user errors."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from lethe.config import Params, load_params
from lethe.errors import LetheError

stderr = Console(stderr=True)

JSON_OPTION = typer.Option(False, "--json", help="Print exactly one JSON object on stdout.")
PARAMS_OPTION = typer.Option(None, "--params", help="params.yaml to use (default: the project's).")


def params_from(path: Path | None) -> Params:
    """Load params.yaml (the project's unless a path is given)."""
    return load_params(path)


def emit(result: dict[str, Any], as_json: bool, human: Callable[[dict[str, Any]], None]) -> None:
    """Print the result: JSON on stdout, or a human rendering."""
    if as_json:
        sys.stdout.write(json.dumps(result, default=str) + "\n")
    else:
        human(result)


def fail(message: str, as_json: bool) -> None:
    """Report a user error as one line (and as a JSON object with --json), exit 2."""
    stderr.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    if as_json:
        sys.stdout.write(json.dumps({"error": message}) + "\n")
    raise typer.Exit(code=2)


@contextmanager
def user_errors(as_json: bool) -> Iterator[None]:
    """Turn LetheError into fail(); anything else is a bug and keeps its traceback."""
    try:
        yield
    except LetheError as exc:
        fail(str(exc), as_json)


@contextmanager
def progress_bars() -> Iterator[Callable[[str], Callable[[int, int, float], None]]]:
    """Rich progress bars on stderr; yields a factory of per-phase step callbacks."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=stderr,
        transient=False,
    ) as bars:

        def factory(label: str) -> Callable[[int, int, float], None]:
            task: list = []  # created at the first step, so an early error prints no empty bar

            def update(step: int, total: int, value: float) -> None:
                if not task:
                    task.append(bars.add_task(label, total=total, info=""))
                bars.update(task[0], completed=step, total=total, info=f"loss {value:.4f}")

            return update

        yield factory
