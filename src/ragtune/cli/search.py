from __future__ import annotations

from typing import Annotated, Optional

import typer

from ragtune.cli.common import CollectionOpt, HomeOpt, JsonOpt, fail, print_json


def search(
    query: Annotated[str, typer.Argument(help="what to search for")],
    collection: CollectionOpt,
    mode: Annotated[Optional[str], typer.Option(help="dense, bm25 or hybrid (default: the pipeline's)")] = None,
    k: Annotated[Optional[int], typer.Option("--k", "-k", help="number of results")] = None,
    user: Annotated[Optional[str], typer.Option("--user", help="search as this user")] = None,
    group: Annotated[Optional[list[str]], typer.Option("--group", help="a group of that user (repeatable)")] = None,
    filter_: Annotated[Optional[list[str]], typer.Option("--filter", help="metadata filter key=value (repeatable)")] = None,
    explain: Annotated[bool, typer.Option("--explain", help="hybrid: show each retriever's own rank of every hit")] = False,
    home: HomeOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Search a collection. Without --user/--group only public documents are visible."""
    from ragtune.collection import Collection
    from ragtune.retrieve import Searcher
    from ragtune.types import Principal

    if mode not in (None, "dense", "bm25", "hybrid"):
        fail(f"--mode must be dense, bm25 or hybrid, not {mode!r}")
    metadata = {}
    for item in filter_ or []:
        key, sep, value = item.partition("=")
        if not sep:
            fail(f"--filter {item!r} must look like key=value")
        metadata[key] = value
    with Collection.open(home, collection) as coll:
        hits = Searcher(coll).search(query, Principal(user, tuple(group or ())), mode=mode, k=k, metadata=metadata,
                                  with_ranks=explain)
    if json_:
        print_json([h.to_dict() for h in hits])
        return
    if not hits:
        typer.echo("no results (nothing visible to this principal matches)")
    for i, h in enumerate(hits, start=1):
        where = f"{h.doc_id}" + (f" > {' > '.join(h.heading_path)}" if h.heading_path else "")
        ranks = " ".join(f"{k}#{v}" for k, v in h.ranks.items())
        snippet = " ".join(h.text.split())
        typer.echo(f"{i:>2}. {h.score:.4f}  {where}  [{ranks}]\n    {snippet[:300]}{'...' if len(snippet) > 300 else ''}")
