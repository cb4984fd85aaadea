from __future__ import annotations

from typing import Annotated

import typer

from ragtune.cli.common import CollectionOpt, HomeOpt, JsonOpt, print_json

app = typer.Typer(help="List, inspect, configure and delete collections.", no_args_is_help=True)


@app.command("list")
def list_(home: HomeOpt = None, json_: JsonOpt = False) -> None:
    """List collections with document and chunk counts."""
    from ragtune.collection import Collection

    rows = []
    for coll in Collection.list(home):
        with coll:
            rows.append(coll.stats())
    if json_:
        print_json(rows)
        return
    if not rows:
        typer.echo("no collections yet; create one with `ragtune ingest PATH -c NAME`")
    for r in rows:
        typer.echo(f"{r['name']}\t{r['documents']} documents\t{r['chunks']} chunks\tindex {r['index_version']}")


@app.command()
def show(name: Annotated[str, typer.Argument(help="collection name")], home: HomeOpt = None) -> None:
    """Show a collection's pipeline and stats as JSON."""
    from ragtune.collection import Collection

    with Collection.open(home, name) as coll:
        print_json({"stats": coll.stats(), "pipeline": coll.pipeline.shown()})


@app.command()
def configure(
    name: Annotated[str, typer.Argument(help="collection name")],
    set_: Annotated[list[str], typer.Option("--set", help="a pipeline field to change, e.g. --set query.k=5 (repeatable)")],
    home: HomeOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Change a collection's bound pipeline (what every later command uses). Everywhere else
    --set applies to one call only. What the index was built with (embedder, chunking, store)
    cannot change here: build a new index version (`ragtune models shadow`) or a new collection."""
    from ragtune.collection import Collection

    with Collection.open(home, name) as coll:
        changes = coll.configure(set_)
    if json_:
        print_json({k: {"old": old, "new": new} for k, (old, new) in changes.items()})
        return
    if not changes:
        typer.echo(f"{name}: nothing changed")
    for key, (old, new) in changes.items():
        typer.echo(f"{name}: {key}: {old!r} → {new!r}")


@app.command()
def delete(
    name: Annotated[str, typer.Argument(help="collection name")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
    home: HomeOpt = None,
) -> None:
    """Delete a collection and its index (the source files are not touched)."""
    from ragtune.collection import Collection

    if not yes:
        typer.confirm(f"delete collection {name!r} and its index?", abort=True)
    Collection.delete(home, name)
    typer.echo(f"deleted {name}")


def status(collection: CollectionOpt, home: HomeOpt = None, json_: JsonOpt = False) -> None:
    """Completeness and freshness of a collection: documents, chunks, pending, last run and its failures."""
    import datetime as dt

    from ragtune.collection import Collection
    from ragtune.collection.encoder import encoder_status

    with Collection.open(home, collection) as coll:
        stats = coll.stats()
        stats["visible_chunks_in_store"] = coll.store.count()
        stats["encoder"] = encoder_status(coll)
    if json_:
        print_json(stats)
        return
    when = lambda t: dt.datetime.fromtimestamp(t).isoformat(timespec="seconds") if t else "never"  # noqa: E731
    typer.echo(f"collection {stats['name']} (index {stats['index_version']})")
    typer.echo(f"  documents: {stats['documents']}  chunks: {stats['chunks']}  pending: {stats['pending']}  "
               f"in store: {stats['visible_chunks_in_store']}")
    typer.echo(f"  last indexed: {when(stats['last_indexed_at'])}")
    enc = stats["encoder"]
    if enc.get("chosen"):
        best = next(m for m in enc["measures"] if m["backend"] == enc["chosen"])
        typer.echo(f"  encoder: {enc['chosen']} ({best['speedup']:.2f}x float32, top-10 overlap {best['overlap']:.4f}; "
                   f"measured {enc['measured']} on {enc['texts']} texts; configured {enc['configured']})")
    else:
        typer.echo(f"  encoder: {enc['configured']} (no backend measured on this machine: `ragtune models speed`)")
    run = stats["last_run"]
    if run:
        typer.echo(f"  last run {when(run['finished'])} on {run['root']}: seen {run['seen']}, new {run['indexed']}, "
                   f"changed {run['updated']}, unchanged {run['unchanged']}, deleted {run['deleted']}, failed {run['failed']}")
        for f in run["failures"][:20]:
            typer.echo(f"    failed {f['source']}: {f['reason']}")
