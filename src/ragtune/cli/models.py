from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ragtune.cli.common import (
    CollectionOpt,
    HomeOpt,
    JsonOpt,
    print_json,
    progress_bars,
)

app = typer.Typer(help="Model and index versions of a collection: shadow, compare, promote, rollback.",
                  no_args_is_help=True)


@app.command("list")
def list_(collection: CollectionOpt, home: HomeOpt = None, json_: JsonOpt = False) -> None:
    """Trained embedder versions and index versions, with which one is live."""
    from ragtune.collection import Collection
    from ragtune.collection.shadow import history
    from ragtune.models.registry import ModelRegistry

    with Collection.open(home, collection) as coll:
        data: dict[str, Any] = {"live": coll.live_version, "index_versions": coll.versions(),
                "embedders": ModelRegistry(home, "embedder", collection).list(), "history": history(coll)}
    if json_:
        print_json(data)
        return
    typer.echo(f"live index: {data['live']}")
    for v, info in sorted(data["index_versions"].items()):
        mark = "*" if v == data["live"] else " "
        typer.echo(f" {mark} {v}  {info.get('state', 'ready'):8s} embedder {info['embedder']}  ({info.get('created', '')})")
    for m in data["embedders"]:
        dev = (m.get("metrics") or {}).get("dev", {}).get("nDCG@10")
        typer.echo(f"   embedder {m['version']}: {m.get('method')} from {m.get('base')}, {m.get('rows')} rows"
                   + (f", dev nDCG@10 {dev:.4f}" if dev is not None else ""))


@app.command()
def shadow(
    collection: CollectionOpt,
    model: Annotated[str, typer.Option("--model", help="embedder version (v2) or a model path/id")],
    home: HomeOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Re-embed the live index with another embedder into a new index version (the live one is untouched)."""
    from ragtune.collection import Collection
    from ragtune.collection.shadow import build_shadow
    from ragtune.models.registry import ModelRegistry

    registry = ModelRegistry(home, "embedder", collection)
    known = {m["version"]: m for m in registry.list()}
    path = str(registry.path(model)) if model in known else model
    share = known.get(model, {}).get("method") == "query-adapter"  # documents embed as before: no copy
    with Collection.open(home, collection) as coll, progress_bars(disable=json_) as on_progress:
        version = build_shadow(coll, path, {"model_version": model if model in known else None}, on_progress=on_progress,
                               share_vectors=share)
    if json_:
        print_json({"version": version, "embedder": path})
    else:
        typer.echo(f"index {version} built with {path}; compare: ragtune models compare -c {collection} --version {version}")


@app.command()
def compare(
    collection: CollectionOpt,
    version: Annotated[str, typer.Option("--version", help="candidate index version")],
    name: Annotated[str, typer.Option("--name", help="synthetic set whose held-out questions to use")] = "default",
    data: Annotated[Optional[Path], typer.Option("--data", help="or a BEIR folder of labelled queries")] = None,
    split: Annotated[str, typer.Option(help="qrels split (dev = held-out synthetic questions)")] = "dev",
    alpha: Annotated[float, typer.Option()] = 0.05,
    home: HomeOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Live vs candidate index on held-out questions, with a paired randomisation test."""
    from ragtune.adapt import compare_versions
    from ragtune.collection import Collection

    with Collection.open(home, collection) as coll:
        c = compare_versions(coll, data or coll.dir / "synth" / name, version, split, alpha=alpha)
    if json_:
        print_json(c.to_dict())
        return
    for v in (c.live, c.candidate):
        typer.echo(f"{v}: " + ", ".join(f"{m} {x:.4f}" for m, x in c.metrics[v].items()))
    typer.echo(f"{c.measure} Δ {c.delta:+.4f} [{c.ci[0]:+.4f}, {c.ci[1]:+.4f}], p={c.p_value:.4f} over {c.queries} "
               f"questions → {'better: promote' if c.promote else 'not shown better: keep the live version'}")


@app.command()
def promote(
    collection: CollectionOpt,
    version: Annotated[str, typer.Option("--version", help="index version to make live")],
    home: HomeOpt = None,
) -> None:
    """Make an index version live (the previous one stays for rollback)."""
    from ragtune.collection import Collection
    from ragtune.collection.shadow import promote as promote_

    with Collection.open(home, collection) as coll:
        before = coll.live_version
        promote_(coll, version, reason="manual")
    typer.echo(f"live index: {before} → {version}")


@app.command()
def rollback(collection: CollectionOpt, home: HomeOpt = None) -> None:
    """Return to the index version that was live before the last promotion."""
    from ragtune.collection import Collection
    from ragtune.collection.shadow import rollback as rollback_

    with Collection.open(home, collection) as coll:
        before = coll.live_version
        after = rollback_(coll, reason="manual")
    typer.echo(f"live index: {before} → {after}")


@app.command()
def speed(
    collection: CollectionOpt,
    sample: Annotated[int, typer.Option(help="chunk texts of the collection to measure on")] = 256,
    min_overlap: Annotated[float, typer.Option(help="least top-10 overlap with float32 a backend may have")] = 0.99,
    home: HomeOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Measure the embedder's backends (PyTorch float32, bf16 where native, ONNX Runtime, int8) on
    this collection's own texts; an `auto` embedder uses the fastest whose search results agree."""
    from ragtune.collection import Collection
    from ragtune.collection.encoder import tune_encoder

    with Collection.open(home, collection) as coll:
        typer.echo(f"measuring on {sample} chunk texts (the first time exports the model: a minute or two)", err=True)
        data = tune_encoder(coll, sample=sample, min_overlap=min_overlap)
    if json_:
        print_json(data)
        return
    for m in data["measures"]:
        mark = "*" if m["backend"] == data["backend"] else " "
        figures = f"error: {m['error']}" if m["error"] else \
            f"{m['texts_per_s']:.1f} texts/s  {m['speedup']:.2f}x float32  top-10 overlap {m['overlap']:.4f}"
        typer.echo(f" {mark} {m['backend']:10s} {figures}")
    typer.echo(f"chosen: {data['backend']} (fastest with overlap >= {min_overlap})")
