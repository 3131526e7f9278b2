"""Shared CLI plumbing: one JSON object on stdout with --json, logs and progress on stderr,
and one clear line (no traceback) for user errors."""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from lethe.errors import LetheError

stderr = Console(stderr=True)

JSON_OPTION = typer.Option(False, "--json", help="Print exactly one JSON object on stdout.")
PARAMS_OPTION = typer.Option(None, "--params", help="params.yaml to use (default: the project's).")


def emit(result: dict[str, Any], as_json: bool, human: Callable[[dict[str, Any]], None]) -> None:
    """Print the result: JSON on stdout, or a human rendering."""
    if as_json:
        sys.stdout.write(json.dumps(result, default=str) + "\n")
    else:
        human(result)


def fail(message: str, as_json: bool) -> None:
    """Report a user error as one line (and as a JSON object with --json), exit 2."""
    stderr.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    if as_json:
        sys.stdout.write(json.dumps({"error": message}) + "\n")
    raise typer.Exit(code=2)


@contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send everything written to stdout while the block runs to stderr instead.

    Libraries print to stdout (MLflow's "View run ..." lines, a subprocess that inherits fd 1), and
    `--json` promises exactly one JSON object there. Python-level writes are redirected always; when
    stdout is the process's real fd 1 it is redirected at the file-descriptor level too, so child
    processes and C extensions cannot write to it either.
    """
    saved_stream, saved_fd = sys.stdout, None
    try:
        real_fd = saved_stream.fileno() == 1
    except (AttributeError, OSError, ValueError):  # an in-memory stream (tests' CliRunner)
        real_fd = False
    if real_fd:
        saved_stream.flush()
        saved_fd = os.dup(1)
        os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stdout = saved_stream
        if saved_fd is not None:
            os.dup2(saved_fd, 1)
            os.close(saved_fd)


@contextmanager
def user_errors(as_json: bool) -> Iterator[None]:
    """Run a command body: LetheError becomes fail(); anything else is a bug and keeps its traceback.

    With --json the body's stdout goes to stderr (see stdout_to_stderr), so that `emit` or `fail`
    afterwards writes the only thing on stdout.
    """
    message = None
    with stdout_to_stderr() if as_json else nullcontext():
        try:
            yield
        except LetheError as exc:
            message = str(exc)
    if message is not None:
        fail(message, as_json)


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


class _TracebacksToFile(logging.Filter):
    """Writes a log record's traceback to a file and leaves one line on the console."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = path

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a") as handle:
                    handle.write(f"{record.name}: {record.getMessage()}\n")
                    handle.write("".join(traceback.format_exception(*record.exc_info)) + "\n")
                where = f"traceback in {self.path}"
            except OSError as exc:  # a full disk must not turn into a second traceback
                where = f"traceback not saved: {exc.strerror}"
            first = (record.getMessage().splitlines() or [""])[0]
            record.msg, record.args = f"{first} ({where})", ()
            record.exc_info, record.exc_text = None, None
        return True


@contextmanager
def tracebacks_to(path: Path) -> Iterator[None]:
    """While the block runs, library log records with a traceback (Prefect's failed task runs) show
    one line on stderr and keep their traceback in `path`: a failure the CLI reports as one clear
    error must not print a traceback, and an engineer still finds it."""
    moved = _TracebacksToFile(path)
    names = [""] + [n for n in logging.Logger.manager.loggerDict if n.split(".")[0] in ("prefect", "mlflow")]
    handlers = {h for n in names for h in logging.getLogger(n).handlers}
    for handler in handlers:
        handler.addFilter(moved)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(moved)
