from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ragtune.cli.common import (
    CollectionOpt,
    ExamplesOpt,
    HomeOpt,
    JsonOpt,
    SetOpt,
    TypesOpt,
    print_json,
    progress_bars,
    query_style,
)

app = typer.Typer(help="Make training data from a collection's own text.", no_args_is_help=True)
NameOpt = Annotated[str, typer.Option("--name", help="synthetic set: collections/<c>/synth/<name>/")]


def _folder(coll, name: str) -> Path:
    return coll.dir / "synth" / name


@app.command()
def queries(
    collection: CollectionOpt,
    name: NameOpt = "default",
    max_chunks: Annotated[Optional[int], typer.Option(help="a random sample of this many chunks")] = None,
    per_chunk: Annotated[int, typer.Option(help="queries per chunk (more than 1 samples, kinds in turn)")] = 1,
    types: TypesOpt = None,
    examples: ExamplesOpt = None,
    seed: Annotated[int, typer.Option()] = 0,
    set_: SetOpt = None,
    home: HomeOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Generate queries each chunk answers — questions, claims, keyword queries — (resumable: a
    re-run continues where it stopped). The generator is the pipeline's (--set
    generator.backend=openai ... for a large model)."""
    from ragtune.collection import Collection
    from ragtune.models.generator import make_generator
    from ragtune.synth.queries import QueryGenConfig, generate_queries

    config = QueryGenConfig(per_chunk=per_chunk, max_chunks=max_chunks, seed=seed, **query_style(types, examples))
    with Collection.open(home, collection) as coll, progress_bars(disable=json_) as on_progress:
        if set_:
            coll.pipeline = coll.pipeline.with_overrides(set_)
        folder = _folder(coll, name)
        total = generate_queries(coll, make_generator(coll.pipeline.generator, home), folder, config, on_progress)
    style = None
    if config.examples:  # did the writer follow the examples? (length, kinds)
        from ragtune.data.beir import read_queries
        from ragtune.synth.style import style_line, style_match

        style = style_match([q["text"] for q in read_queries(folder)], config.examples)
    if json_:
        print_json({"folder": str(folder), "candidates": total, **({"style": style} if style else {})})
    else:
        typer.echo(f"{total} candidate queries ({', '.join(dict.fromkeys(config.type_cycle()))} in turn) in "
                   f"{folder / 'queries.jsonl'}; next: ragtune synth filter -c {collection}")
        if style:
            typer.echo(style_line(style))


@app.command("filter")
def filter_(
    collection: CollectionOpt,
    name: NameOpt = "default",
    round_trip_k: Annotated[int, typer.Option(help="source chunk must rank this high under bm25 or dense")] = 10,
    dev_fraction: Annotated[float, typer.Option(help="share of documents held out for evaluation")] = 0.15,
    home: HomeOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Drop malformed, duplicate and round-trip-failing questions; split train / held-out dev by document."""
    from ragtune.collection import Collection
    from ragtune.synth.filters import FilterConfig, filter_queries

    with Collection.open(home, collection) as coll, progress_bars(disable=json_) as on_progress:
        report = filter_queries(coll, _folder(coll, name), FilterConfig(round_trip_k=round_trip_k, dev_fraction=dev_fraction),
                                on_progress)
    if json_:
        print_json(report.to_dict())
        return
    r = report.removed
    typer.echo(f"{report.candidates} candidates: removed {r['malformed']} malformed {report.malformed_reasons or ''}, "
               f"{r['duplicate']} duplicates, {r['round_trip']} failing the round trip; kept {report.kept} "
               f"({report.train} train, {report.dev} dev)")


@app.command()
def negatives(
    collection: CollectionOpt,
    name: NameOpt = "default",
    split: Annotated[str, typer.Option()] = "train",
    num: Annotated[int, typer.Option("--num", help="negatives per question")] = 3,
    margin: Annotated[float, typer.Option(help="relative margin below the positive's score")] = 0.05,
    home: HomeOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Mine hard negatives with the current embedder and BM25, keeping likely false negatives out."""
    from ragtune.collection import Collection
    from ragtune.synth.negatives import MiningConfig, mine_negatives

    with Collection.open(home, collection) as coll, progress_bars(disable=json_) as on_progress:
        stats = mine_negatives(coll, _folder(coll, name), split, MiningConfig(num_negatives=num, relative_margin=margin),
                               on_progress)
    if json_:
        print_json(stats)
    else:
        typer.echo(f"{stats['negatives']} negatives for {stats['queries']} questions ({stats['dropped_margin']} too close "
                   f"to the positive, {stats['dropped_same_document']} from its own document, dropped)")


@app.command()
def answers(
    collection: CollectionOpt,
    name: NameOpt = "answers",
    max_chunks: Annotated[Optional[int], typer.Option(help="a random sample of this many chunks")] = None,
    seed: Annotated[int, typer.Option()] = 0,
    reader: Annotated[Optional[str], typer.Option(
        "--reader", help="instead of an LLM teacher: this span reader answers the filtered synthetic questions "
        "of --questions on their own chunk, confident answers kept")] = None,
    questions: Annotated[str, typer.Option("--questions", help="with --reader: the synthetic question set")] = "default",
    min_margin: Annotated[float, typer.Option(help="with --reader: span score over no-answer score to keep")] = 0.0,
    scope: Annotated[Optional[list[str]], typer.Option(
        "--scope", help="use chunks these ACL tokens may read (repeatable, e.g. group:hr); default public")] = None,
    set_: SetOpt = None,
    home: HomeOpt = None,
    json_: JsonOpt = False,
) -> None:
    """A teacher writes (question, context, answer) triples from the chunks, answers copied
    verbatim from the passage; kept ones go to squad.json for `ragtune train generator --data`
    or `ragtune train reader --data`. The teacher is the pipeline's generator: point it at a
    large model with --set generator.backend=openai --set generator.base_url=... --set
    generator.model=...; or, with --reader, a trained span reader answers the questions `synth
    queries` + `synth filter` made (self-training, when no LLM writes usable answers).
    Resumable: a re-run continues where it stopped."""
    from ragtune.collection import Collection
    from ragtune.models.generator import make_generator
    from ragtune.synth.answers import AnswerSynthConfig, synthesize_answers

    if reader is not None:
        from ragtune.answer.extractive import SpanReader
        from ragtune.synth.reader_answers import reader_answers

        with Collection.open(home, collection) as coll, progress_bars(disable=json_) as on_progress:
            out = _folder(coll, name) / "squad.json"
            with coll.scoped(scope or ["public"]) as data:
                counts = reader_answers(data, _folder(coll, questions), SpanReader(reader), out, min_margin,
                                        ("train", "dev"), on_progress)
        if json_:
            print_json({"squad": str(out), **counts})
        else:
            typer.echo(f"{counts['kept']} of {counts['questions']} synthetic questions answered confidently → {out}\n"
                       f"next: ragtune train reader -c {collection} --base {reader} --data {out} --apply")
        return
    with Collection.open(home, collection) as coll, progress_bars(disable=json_) as on_progress:
        if set_:
            coll.pipeline = coll.pipeline.with_overrides(set_)
        folder = _folder(coll, name)
        with coll.scoped(scope or ["public"]) as data:  # the answers record whose text they are
            report = synthesize_answers(data, make_generator(coll.pipeline.generator, home), folder,
                                        AnswerSynthConfig(max_chunks=max_chunks, seed=seed), on_progress)
    if json_:
        print_json({"folder": str(folder), "squad": str(folder / "squad.json"), **report.to_dict()})
        return
    typer.echo(f"{report.kept} of {report.chunks} chunks gave a question with a verbatim answer "
               f"(dropped: {report.dropped or 'none'}) → {folder / 'squad.json'}\n"
               f"next: ragtune train generator -c <scratch collection> --data {folder / 'squad.json'} --name ...")
