"""Options shared by several commands, and the one place CLI errors become messages."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

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


def fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)
