from __future__ import annotations

from typing import Annotated, Optional

import typer

from ragtune.cli.common import (
    CollectionOpt,
    HomeOpt,
    JsonOpt,
    print_json,
    progress_bars,
)


def migrate(
    collection: CollectionOpt,
    to: Annotated[str, typer.Option("--to", help="qdrant-edge | qdrant | qdrant+http://HOST:6333 | pgvector | postgresql://USER@HOST/DB")],
    name: Annotated[Optional[str], typer.Option("--name", help="the copy's collection name (default <collection>-<backend>)")] = None,
    home: HomeOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Copy a collection (live index + manifest) to another store backend; counts and checksums are
    verified before it is kept. The source is left as it is."""
    from ragtune.cli.common import fail
    from ragtune.collection import Collection
    from ragtune.collection.migrate import migrate as migrate_
    from ragtune.collection.migrate import store_config_for

    with Collection.open(home, collection) as source:
        try:
            target = store_config_for(to, source.pipeline.store)
        except ValueError as e:
            fail(str(e))
        name = name or f"{collection}-{target.backend}"
        if any(c.name == name for c in Collection.list(home)):
            fail(f"collection {name!r} exists; pick another --name")
        with progress_bars(disable=json_) as on_progress:
            report = migrate_(source, target, home, name, on_progress=on_progress)
    if json_:
        print_json(report.to_dict())
        return
    typer.echo(f"{report.chunks} chunks copied {collection} → {name} ({report.backend}) in {report.seconds:.1f}s; "
               f"checksum {report.payload_checksum[:16]} on both sides, vectors within {report.max_vector_difference:.1e}\n"
               f"use it: ragtune search -c {name} \"...\"")
