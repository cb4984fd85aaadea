from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from ragtune.cli.common import CollectionOpt, HomeOpt, JsonOpt, SetOpt, print_json


def ask(
    question: Annotated[str, typer.Argument(help="the question")],
    collection: CollectionOpt,
    user: Annotated[Optional[str], typer.Option("--user", help="ask as this user")] = None,
    group: Annotated[Optional[list[str]], typer.Option("--group", help="a group of that user (repeatable)")] = None,
    k: Annotated[Optional[int], typer.Option("--k", "-k", help="retrieved chunks considered")] = None,
    stream: Annotated[bool, typer.Option("--stream", help="print the answer as it is generated")] = False,
    set_: SetOpt = None,
    home: HomeOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Answer a question from a collection, citing sources; says "I don't know" when the
    visible documents do not hold the answer. --set overrides apply to this call only
    (e.g. --set generator.backend=openai --set generator.base_url=http://localhost:8000/v1)."""
    from ragtune.answer import Answer, Answerer
    from ragtune.collection import Collection
    from ragtune.models.generator import make_generator
    from ragtune.types import Principal

    principal = Principal(user, tuple(group or ()))
    with Collection.open(home, collection) as coll:
        if set_:
            coll.pipeline = coll.pipeline.with_overrides(set_)
        answerer = Answerer(coll, make_generator(coll.pipeline.generator, home))
        if stream and not json_:
            answer = None
            for piece in answerer.stream(question, principal, k):
                if isinstance(piece, Answer):
                    answer = piece
                else:
                    sys.stdout.write(piece)
                    sys.stdout.flush()
            sys.stdout.write("\n")
        else:
            answer = answerer.ask(question, principal, k)
            if not json_:
                typer.echo(answer.text)
    if json_:
        print_json(answer.to_dict())
        return
    if answer.citations:
        typer.echo("\nSources:")
        for c in answer.citations:
            typer.echo(f"  [{c.number}] {c.title or c.doc_id} — {c.source}")
    elif not answer.abstained and answer.passages:
        typer.echo("\n(no citations in the answer; context came from: "
                   + ", ".join(dict.fromkeys(h.doc_id for h in answer.hits)) + ")")
    times = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in answer.timings.items())
    typer.echo(f"\n[{times}]", err=True)
