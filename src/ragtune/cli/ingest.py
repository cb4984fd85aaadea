from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ragtune.cli.common import CollectionOpt, HomeOpt, JsonOpt, SetOpt, err, print_json


def ingest(
    path: Annotated[Path, typer.Argument(help="a file or folder to sync into the collection")],
    collection: CollectionOpt,
    public: Annotated[bool, typer.Option("--public", help="everyone may see these documents")] = False,
    acl_group: Annotated[Optional[list[str]], typer.Option("--acl-group", help="a group that may see them (repeatable)")] = None,
    acl_user: Annotated[Optional[list[str]], typer.Option("--acl-user", help="a user who may see them (repeatable)")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="pipeline YAML/TOML for a new collection")] = None,
    set_: SetOpt = None,
    home: HomeOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Sync a file or folder into a collection: only new or changed documents are embedded,
    deleted ones are removed. Creates the collection on first use, bound to --config and --set
    (later runs keep that pipeline; change it with `ragtune collections configure`)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from ragtune.collection import Collection
    from ragtune.config import PipelineConfig
    from ragtune.ingest.sync import ingest as run_ingest
    from ragtune.types import Acl

    acl = Acl(public=public, users=tuple(acl_user or ()), groups=tuple(acl_group or ()))
    if acl.is_empty:
        err.print("[yellow]note:[/] no --public, --acl-group or --acl-user given: only records that carry "
                  "their own 'acl' will be indexed; other documents are reported as failures.")
    if Collection.exists(home, collection):
        # --config / --set bind a *new* collection's pipeline; on an existing one they apply to
        # this call only (and may not change what its index was built with).
        base = PipelineConfig.load(config) if config else None
        coll = Collection.for_call(home, collection, set_, base=base)
        if config or set_:
            err.print(f"[yellow]note:[/] {collection!r} exists: --config/--set apply to this run only; change its "
                      f"pipeline with `ragtune collections configure {collection} --set ...`")
    else:
        pipeline = (PipelineConfig.load(config) if config else PipelineConfig()).with_overrides(set_)
        coll = Collection.create(home, collection, pipeline)
    with coll:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err, transient=True, disable=json_) as progress:
            files = progress.add_task("reading files", total=None)
            chunks = progress.add_task("chunks embedded", total=None)

            def on_progress(event: str, done: int, total: int) -> None:
                if event == "files":
                    progress.update(files, completed=done, total=total)
                else:
                    progress.update(chunks, completed=done)

            report = run_ingest(coll, path, acl, on_progress)
        stats = coll.stats()
    summary = {k: v for k, v in vars(report).items() if k != "failures"}
    summary["failures"] = [{"source": s, "reason": r} for s, r in report.failures]
    summary["collection"] = stats
    if json_:
        print_json(summary)
    else:
        err.print(
            f"[bold]{collection}[/]: {report.seen} documents seen, {report.indexed} new, {report.updated} changed, "
            f"{report.relabelled} relabelled, {report.unchanged} unchanged, {report.deleted} deleted, "
            f"{report.failed} failed, {report.skipped} skipped; {report.chunks} chunks written in {report.seconds:.1f}s. "
            f"Collection: {stats['documents']} documents, {stats['chunks']} chunks."
        )
        for source, reason in report.failures[:20]:
            err.print(f"  [red]failed[/] {source}: {reason}", highlight=False)
        if report.failed > 20:
            err.print(f"  ... and {report.failed - 20} more (see `ragtune status -c {collection} --json`)")
