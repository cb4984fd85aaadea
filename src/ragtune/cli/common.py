"""Options shared by several commands, and the one place CLI errors become messages."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Callable, Iterator, NoReturn, Optional

import typer
from rich.console import Console

HomeOpt = Annotated[
    Optional[Path],
    typer.Option("--home", envvar="RAGTUNE_HOME", help="ragtune's data folder (default ./.ragtune)"),
]
CollectionOpt = Annotated[str, typer.Option("--collection", "-c", help="collection name")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print machine-readable JSON")]
SetOpt = Annotated[
    Optional[list[str]],
    typer.Option("--set", help="override a pipeline field, e.g. --set chunking.chunk_size=128 (repeatable)"),
]

err = Console(stderr=True)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


@contextmanager
def progress_bars(disable: bool = False) -> Iterator[Callable[[str, int, int], None]]:
    """An ``on_progress(event, done, total)`` callback drawing one rich bar per event (total 0 = unknown)."""
    from rich.progress import Progress

    with Progress(console=err, transient=True, disable=disable) as progress:
        tasks: dict[str, Any] = {}

        def on_progress(event: str, done: int, total: int) -> None:
            if event not in tasks:
                tasks[event] = progress.add_task(event, total=total or None)
            progress.update(tasks[event], completed=done, total=total or None)

        yield on_progress


TypesOpt = Annotated[Optional[str], typer.Option(
    "--types", help="query kinds, in turn: question,claim,keywords (default: all three, or the kinds of --examples)")]
ExamplesOpt = Annotated[Optional[Path], typer.Option(
    "--examples", help="a .txt of up to 8 real queries (one per line, no labels): generation follows their style")]


def query_style(types: str | None, examples: Path | None) -> dict:
    """``QueryGenConfig`` keywords from --types / --examples, failing with a clear message."""
    from ragtune.synth.queries import check_examples
    from ragtune.synth.query_types import parse_types

    out: dict = {}
    try:
        if types:
            out["types"] = parse_types(types)
        if examples is not None:
            if not examples.is_file():
                fail(f"--examples {examples}: no such file")
            out["examples"] = check_examples(examples.read_text().splitlines())
            if not out["examples"]:
                fail(f"--examples {examples}: no queries in it (one per line)")
    except ValueError as e:
        fail(f"--types / --examples: {e}")
    return out
