from __future__ import annotations

import sys
from pathlib import Path
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
    adapter: Annotated[Optional[str], typer.Option("--adapter", help="answer with this fine-tuned adapter (`ragtune adapters list`)")] = None,
    set_: SetOpt = None,
    home: HomeOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Answer a question from a collection, citing sources; says "I don't know" when the
    visible documents do not hold the answer. --set overrides apply to this call only
    (e.g. --set generator.backend=openai --set generator.base_url=http://localhost:8000/v1).
    With the packaged 135M model and no endpoint, the answer is extractive: a span copied from
    the passage it cites (--set answer.mode=generative to let the small model write anyway)."""
    from ragtune.answer import Answer, Answerer
    from ragtune.collection import Collection
    from ragtune.types import Principal

    principal = Principal(user, tuple(group or ()))
    with Collection.open(home, collection) as coll:
        if set_:
            coll.pipeline = coll.pipeline.with_overrides(set_)
        if adapter:
            from ragtune.models.adapters import AdapterRegistry

            AdapterRegistry(home).resolve(adapter)  # an unknown name fails here, listing the known ones
            coll.pipeline.generator.adapter = adapter
        answerer = Answerer.from_pipeline(coll, home)
        if stream and not json_:
            answer: Answer | None = None
            shown = []
            for piece in answerer.stream(question, principal, k):
                if isinstance(piece, Answer):
                    answer = piece
                else:
                    shown.append(piece)
                    sys.stdout.write(piece)
                    sys.stdout.flush()
            sys.stdout.write("\n")
            assert answer is not None  # a stream always ends with its Answer
            if answer.text != "".join(shown).strip():  # the grounding guard changed what was streamed
                typer.echo(f"\nchecked against the passages: {answer.text}")
        else:
            answer = answerer.ask(question, principal, k)
            if not json_:
                typer.echo(answer.text)
    if json_:
        print_json(answer.to_dict())
        return
    span = answer.span
    sentence = " ".join(span.sentence.split()) if span is not None else ""
    if span is not None and not answer.abstained and sentence and sentence != answer.text:
        typer.echo(f"  in [{span.passage}]: “{sentence}”")
    if answer.unsupported:
        typer.echo(f"\n(the grounding guard removed {len(answer.unsupported)} sentence(s) the passages do not support)")
    if answer.citations:
        typer.echo("\nSources:")
        for c in answer.citations:
            typer.echo(f"  [{c.number}] {c.title or c.doc_id} — {c.source}")
    elif not answer.abstained and answer.passages:
        typer.echo("\n(no citations in the answer; context came from: "
                   + ", ".join(dict.fromkeys(h.doc_id for h in answer.hits)) + ")")
    if answer.answered_by:
        typer.echo(f"\nanswered by: {_answered_by(answer)}")
    times = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in answer.timings.items())
    typer.echo(f"\n[{times}]", err=True)


def _answered_by(answer) -> str:
    if answer.mode == "extractive":
        how = "the sentence closest to the question" if answer.answered_by == "sentence-baseline" else "a span model"
        return f"extractive reader {answer.answered_by} ({how}, copied from the cited passage)"
    grounded = f", groundedness {answer.groundedness:.2f}" if answer.groundedness is not None else ""
    return f"generative model {answer.answered_by}{grounded}"


def calibrate(
    collection: CollectionOpt,
    answerable: Annotated[Path, typer.Option("--answerable", help="held-out questions the collection answers (.txt lines or .jsonl 'question')")],
    unanswerable: Annotated[Path, typer.Option("--unanswerable", help="held-out questions it does not answer")],
    apply: Annotated[bool, typer.Option("--apply", help="store the threshold(s) in the collection's pipeline")] = False,
    user: Annotated[Optional[str], typer.Option("--user")] = None,
    group: Annotated[Optional[list[str]], typer.Option("--group")] = None,
    home: HomeOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Calibrate the retrieval-confidence threshold below which `ask` abstains without reading or
    generating; with a span reader answering (extractive mode, `reader.model` set), also the reader's
    no-answer margin on the questions that pass it (`reader.null_margin`)."""
    from dataclasses import asdict

    from ragtune.answer.abstain import calibrate_threshold, confidences
    from ragtune.collection import Collection
    from ragtune.retrieve import Searcher
    from ragtune.types import Principal

    principal = Principal(user, tuple(group or ()))
    asked, off = _questions(answerable), _questions(unanswerable)
    with Collection.open(home, collection) as coll:
        searcher = Searcher(coll)
        k = coll.pipeline.answer.k
        result = calibrate_threshold(confidences(searcher, asked, principal, k), confidences(searcher, off, principal, k))
        # The reader is calibrated behind the new threshold, on its own margins (not the stored cut's abstentions).
        stored = coll.pipeline.reader.null_margin
        coll.pipeline.answer.min_retrieval_confidence = round(result.threshold, 4)
        coll.pipeline.reader.null_margin = None
        margin, reader = _reader_margin(coll, searcher, asked, off, principal)
        if apply:
            coll.pipeline.reader.null_margin = stored if margin is None else round(margin, 4)
            coll.save_pipeline()
    if json_:
        print_json({**asdict(result), "applied": apply, "reader_null_margin": margin,
                    "reader": asdict(reader) if reader else None})
        return
    typer.echo(f"threshold {result.threshold:.4f}: answers {result.answer_recall:.1%} of {result.n_answerable} answerable, "
               f"abstains on {result.abstain_recall:.1%} of {result.n_unanswerable} unanswerable "
               f"(balanced accuracy {result.balanced_accuracy:.3f}){'; stored in the pipeline' if apply else ''}")
    if reader is not None:
        typer.echo(f"reader.null_margin {margin:.4f}, on the questions that pass it: answers {reader.answer_recall:.1%} of "
                   f"{reader.n_answerable}, abstains on {reader.abstain_recall:.1%} of {reader.n_unanswerable} "
                   f"(balanced accuracy {reader.balanced_accuracy:.3f}){'; stored in the pipeline' if apply else ''}")
    elif _span_reader(coll):
        typer.echo("reader.null_margin left unset: fewer than 5 questions on either side reached the reader "
                   "(add unanswerable questions closer to the collection's topics)")


def _span_reader(coll) -> bool:
    pipeline = coll.pipeline
    return pipeline.answer.resolved_mode(pipeline.generator) == "extractive" and pipeline.reader.model is not None


def _reader_margin(coll, searcher, answerable: list[str], unanswerable: list[str], principal):
    """The span reader's no-answer margin over the questions that pass the pipeline's retrieval threshold:
    ``(None, None)`` for the sentence baseline, a generative pipeline, or too few questions."""
    from ragtune.answer import Answerer
    from ragtune.answer.abstain import calibrate_reader_margin, reader_margin
    from ragtune.answer.extractive import make_reader

    if not _span_reader(coll):
        return None, None
    answerer = Answerer(coll, reader=make_reader(coll.pipeline.reader, coll.embedder), searcher=searcher)
    return calibrate_reader_margin([reader_margin(answerer.ask(q, principal)) for q in answerable],
                                   [reader_margin(answerer.ask(q, principal)) for q in unanswerable])


def _questions(path: Path) -> list[str]:
    import json

    from ragtune.cli.common import fail

    try:
        lines = [line for line in path.read_text().splitlines() if line.strip()]
    except OSError as e:
        fail(f"{path}: cannot read ({e.strerror})")
    if path.suffix == ".jsonl":
        try:
            return [json.loads(line)["question"] for line in lines]
        except (ValueError, KeyError, TypeError) as e:
            fail(f"{path}: every line must be a JSON object with a 'question' ({e})")
    return lines
