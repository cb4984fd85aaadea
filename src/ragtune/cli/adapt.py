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
    err,
    print_json,
    progress_bars,
    query_style,
)


def adapt(
    collection: CollectionOpt,
    max_chunks: Annotated[Optional[int], typer.Option(help="generate queries for a sample of chunks")] = None,
    budget_minutes: Annotated[Optional[float], typer.Option(
        "--budget-minutes", help="size the run to this many minutes: speeds are measured here and the query set "
        "planned to fit (overrides --max-chunks)", min=1)] = None,
    types: TypesOpt = None,
    examples: ExamplesOpt = None,
    method: Annotated[str, typer.Option(help="embedder training: full | lora | query-adapter (no re-embedding)")] = "full",
    epochs: Annotated[float, typer.Option()] = 1.0,
    run: Annotated[str, typer.Option("--run", help="run name: synth/<run>/ and adapt/<run>/ (re-use it to resume)")] = "latest",
    labelled: Annotated[Optional[Path], typer.Option(
        "--labelled", help="BEIR folder of your own labelled queries (qrels on document or chunk ids): they decide")] = None,
    feedback: Annotated[Optional[Path], typer.Option(
        "--feedback", help="labelled queries from feedback (retrieval/<collection>/ of `ragtune feedback export`): "
        "train split trains, test split judges (decides once it holds --min-feedback-queries)")] = None,
    min_feedback_queries: Annotated[int, typer.Option(help="feedback test questions needed to decide")] = 20,
    no_synthetic: Annotated[bool, typer.Option("--no-synthetic", help="no query generation: train on --feedback alone")] = False,
    no_promote: Annotated[bool, typer.Option("--no-promote", help="evaluate the shadow but keep the live index")] = False,
    no_tune: Annotated[bool, typer.Option("--no-tune", help="keep the retrieval settings (no `ragtune tune` step)")] = False,
    teacher: Annotated[str, typer.Option(help="none (contrastive, MNRL) | hybrid | cross-encoder: distil the teacher's scores")] = "none",
    reranker: Annotated[bool, typer.Option("--reranker", help="train a reranker in the loop (gated; the cross-encoder teacher)")] = False,
    reranker_squad: Annotated[Optional[Path], typer.Option("--reranker-squad", help="SQuAD file for the reranker's stage 1")] = None,
    probes: Annotated[int, typer.Option(
        help="gate probes: queries of other kinds, in other words, for held-out documents (0: none); "
        "~1000 find a +0.01 gain, 200 only ~+0.02", min=0)] = 1000,
    judge: Annotated[str, typer.Option(
        help="who judges the probes: auto (the collection's reranker, else the one --reranker trains) | none "
        "(their source chunk) | a cross-encoder id or folder")] = "auto",
    min_effect: Annotated[float, typer.Option(help="smallest nDCG@10 gain the gate promotes")] = 0.005,
    teacher_scale: Annotated[float, typer.Option(
        help="a teacher-judged Δ per real-query Δ: on teacher-judged probes the minimum effect is "
        "min-effect × this (a teacher's grades compress a Δ; 0.65 fitted for a 1500-step stage-1 judge, "
        "0.25 for a weaker 250-step one)", min=0.0, max=1.0)] = 0.65,
    probe_writer: Annotated[Optional[str], typer.Option(
        "--probe-writer", help="who writes the probes: the loop's writer (default) | base (the model without "
        "its adapter) | an adapter name or folder, e.g. qgen from `ragtune train qgen` (local generator)")] = None,
    scope: Annotated[Optional[list[str]], typer.Option(
        "--scope", help="train on chunks these ACL tokens may read (repeatable; e.g. group:hr); default public")] = None,
    set_: SetOpt = None,
    home: HomeOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Domain-adapt retrieval with no labels: synthetic questions → filters → retrieval settings
    tuned (kept only if they win) → hard negatives →
    (reranker, gated) → teacher scores → embedder training → shadow index → held-out comparison →
    promote if significantly better.
    Resumable: run it again with the same --run to continue after a stop."""
    from ragtune.adapt import AdaptConfig
    from ragtune.adapt import adapt as adapt_
    from ragtune.cli.common import fail
    from ragtune.collection import Collection
    from ragtune.models.generator import make_generator
    from ragtune.synth.queries import QueryGenConfig
    from ragtune.train.embedder import EmbedderTrainConfig
    from ragtune.train.reranker import RerankerTrainConfig

    if teacher not in ("none", "hybrid", "cross-encoder"):
        fail(f"--teacher {teacher!r}: use none, hybrid or cross-encoder")
    config = AdaptConfig(queries=QueryGenConfig(max_chunks=max_chunks, **query_style(types, examples)),
                         training=EmbedderTrainConfig(method=method, epochs=epochs),  # type: ignore[arg-type]
                         promote=not no_promote, labelled=labelled, teacher=teacher,  # type: ignore[arg-type]
                         reranker=RerankerTrainConfig(epochs=epochs) if reranker or reranker_squad else None,
                         reranker_squad=reranker_squad, scope=tuple(scope or ["public"]),
                         budget_minutes=budget_minutes, feedback=feedback, min_feedback_queries=min_feedback_queries,
                         synthetic=not no_synthetic, probes=probes, judge=judge, min_effect=min_effect,
                         teacher_scale=teacher_scale,
                         tune=not no_tune)
    with Collection.open(home, collection) as coll, progress_bars(disable=json_) as on_progress:
        if set_:
            coll.pipeline = coll.pipeline.with_overrides(set_)
        generator = make_generator(coll.pipeline.generator, home) if config.synthetic else None
        prober = None
        if probe_writer and config.synthetic and probes > 0:
            if coll.pipeline.generator.backend != "local":
                fail("--probe-writer picks a local model or adapter; the pipeline's generator is an endpoint "
                     "(set generator.backend=local, or leave --probe-writer out)")
            adapter = None if probe_writer == "base" else probe_writer
            prober = make_generator(coll.pipeline.generator.model_copy(update={"adapter": adapter}), home)
        report = adapt_(coll, generator, config, run, home, on_progress,
                        on_step=lambda s: err.print(f"[bold]step:[/] {s}") if not json_ else None, probe_generator=prober)
    if json_:
        print_json(report)
    else:
        typer.echo((coll.dir / "adapt" / run / "report.md").read_text())
