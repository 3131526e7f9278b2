"""The `lethe` command line. Heavy libraries are imported inside commands (start-up stays fast)."""

from __future__ import annotations

import typer

from lethe.cli import world
from lethe.cli.agent import agentic_forget, memory_app
from lethe.cli.ask import ask
from lethe.cli.mine import mine, step
from lethe.cli.ops import compliance_run_command, forget, promote, request_app, rollback, serve, stack_app
from lethe.cli.unlearn import evaluate, unlearn

app = typer.Typer(
    help="Lethe: make a language model forget one entity, given only its name, and prove it.",
    pretty_exceptions_enable=False,
    no_args_is_help=True,
)
app.add_typer(world.app, name="world")
app.command("ask")(ask)
app.command("mine")(mine)
app.command("step")(step)
app.command("unlearn")(unlearn)
app.command("evaluate")(evaluate)
app.command("forget")(forget)
app.add_typer(request_app, name="request")
app.command("promote")(promote)
app.command("rollback")(rollback)
app.command("compliance-run")(compliance_run_command)
app.command("serve")(serve)
app.add_typer(stack_app, name="stack")
app.command("agentic-forget")(agentic_forget)
app.add_typer(memory_app, name="memory")


def main() -> None:
    """Entry point of the `lethe` script.

    Files Lethe writes (forget sets, graphs, adapters, stores) are readable by their owner only, and
    a SIGTERM unwinds like Ctrl-C, so a running request ends `failed` (resumable) instead of
    staying `running`.
    """
    import os
    import signal

    os.umask(0o077)

    def terminate(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    app()
