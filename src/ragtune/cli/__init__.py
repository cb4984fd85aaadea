"""``ragtune`` command line: each command is a plain typed function over the library."""

from __future__ import annotations

import typer

from ragtune.cli import (
    adapt,
    adapters,
    ask,
    collections,
    eval,
    flywheel,
    ingest,
    migrate,
    models,
    search,
    serve,
    sources,
    synth,
    train,
    tune,
)
from ragtune.cli.common import err

app = typer.Typer(
    name="ragtune",
    help="Self-hosted RAG that adapts itself to your documents.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command()(ingest.ingest)
app.command()(search.search)
app.command()(ask.ask)
app.command()(ask.calibrate)
app.command()(collections.status)
app.add_typer(collections.app, name="collections")
app.add_typer(sources.app, name="sources")
app.add_typer(eval.app, name="eval")
app.add_typer(synth.app, name="synth")
app.add_typer(train.app, name="train")
app.add_typer(models.app, name="models")
app.add_typer(adapters.app, name="adapters")
app.command()(adapt.adapt)
app.command()(tune.tune)
app.add_typer(flywheel.app, name="flywheel")
app.command()(migrate.migrate)
app.command()(serve.serve)
app.command()(serve.mcp)
app.add_typer(serve.keys_app, name="keys")
app.add_typer(serve.feedback_app, name="feedback")


def quiet_libraries() -> None:
    """Silence library chatter that is not the user's business: bitsandbytes warns on import, on
    every CPU without its optional ``kernels`` package, that it could not load a faster kernel.
    Set here, in the entry point, so the library itself configures no process-wide logging."""
    import logging

    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)


def _only_rank0_reports() -> None:
    """Under torchrun every rank runs the command; only rank 0 prints its result."""
    import os
    import sys

    from ragtune.models.registry import is_main_process

    if not is_main_process():
        sys.stdout = open(os.devnull, "w")


def main() -> None:
    from ragtune.errors import RagtuneError

    quiet_libraries()
    _only_rank0_reports()
    try:
        app()
    except RagtuneError as e:  # the user's to fix: one clear line; anything else is a bug and keeps its traceback
        err.print(f"[bold red]error:[/] {e}", highlight=False)
        raise SystemExit(2) from None
