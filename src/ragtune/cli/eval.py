from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from ragtune.cli.common import (
    HomeOpt,
    JsonOpt,
    SetOpt,
    err,
    fail,
    print_json,
    progress_bars,
)

app = typer.Typer(help="Evaluate retrieval, answers and ingestion; compare runs.", no_args_is_help=True)


@app.command()
def retrieval(
    dataset: Annotated[Path, typer.Option("--dataset", help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/)")],
    split: Annotated[str, typer.Option(help="qrels split to score")] = "test",
    modes: Annotated[str, typer.Option(help="comma-separated: bm25,dense,hybrid")] = "bm25,dense,hybrid",
    collection: Annotated[Optional[str], typer.Option("--collection", "-c",
                          help="index into this named collection (reused by later runs); default: throw-away")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="pipeline YAML/TOML")] = None,
    set_: SetOpt = None,
    depth: Annotated[int, typer.Option(help="documents ranked per query")] = 100,
    home: HomeOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Index a BEIR corpus, run each retrieval mode on a split, score it, and write a run directory."""
    from ragtune.config import PipelineConfig
    from ragtune.evaluate.retrieval import evaluate_retrieval

    mode_list = [m.strip() for m in modes.split(",") if m.strip()]
    bad = [m for m in mode_list if m not in ("bm25", "dense", "hybrid")]
    if bad:
        fail(f"--modes: unknown mode(s) {bad}; use bm25, dense, hybrid")
    pipeline = PipelineConfig.load(config) if config else None
    with progress_bars(disable=json_) as on_progress:
        run = evaluate_retrieval(dataset, split, mode_list, home, collection, pipeline, depth, overrides=set_,
                                 on_progress=on_progress)
    if json_:
        print_json({"run": str(run.path), "metrics": run.metrics()})
    else:
        typer.echo((run.path / "summary.md").read_text())
        typer.echo(f"run directory: {run.path}")


@app.command()
def qa(
    dataset: Annotated[Path, typer.Option("--dataset", help="SQuAD-format JSON (v1, v2, COVID-QA)")],
    collection: Annotated[Optional[str], typer.Option(
        "--collection", "-c", help="answer with this collection's pipeline (its contexts are indexed into it first)")] = None,
    predictions: Annotated[Optional[Path], typer.Option(
        "--predictions", help="score ready answers instead: JSON {question id: answer text}")] = None,
    limit: Annotated[Optional[int], typer.Option(help="answer a random sample of this many questions")] = None,
    seed: Annotated[int, typer.Option(help="seed of that sample")] = 0,
    set_: SetOpt = None,
    home: HomeOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Score answers against a SQuAD-format file: EM, F1, subset match, abstention; with -c the
    answers come from the collection's retrieve-then-answer path, with retrieval hit@k and
    latency per stage; with --predictions they come from a file."""
    from ragtune.data.squad import load_squad

    if (collection is None) == (predictions is None):
        fail("give either -c COLLECTION (answer the questions) or --predictions FILE (score given answers)")
    try:
        examples = load_squad(dataset)
    except ValueError as e:
        fail(str(e))
    if predictions is not None:
        _score_predictions(dataset, examples, predictions, home, json_)
        return
    assert collection is not None  # one of the two is given: checked above
    _answer_and_score(dataset, examples, collection, limit, seed, set_, home, json_)


def _answer_and_score(dataset: Path, examples, collection: str, limit, seed: int, set_, home, json_: bool) -> None:
    from ragtune.answer import Answerer
    from ragtune.collection import Collection
    from ragtune.data.squad import sample
    from ragtune.evaluate.answers import evaluate_answers
    from ragtune.ingest.datasets import index_contexts

    # --set is for this run only; a collection created here is bound only to what its index is built with.
    with Collection.for_call(home, collection, set_, create=True) as coll, progress_bars(disable=json_) as on_progress:
        index_contexts(coll, examples, dataset.stem, home, on_progress)
        chosen = sample(examples, limit, seed)
        run = evaluate_answers(Answerer.from_pipeline(coll, home), chosen, home=home, on_progress=on_progress,
                               config={"dataset": str(dataset.resolve()), "collection": collection,
                                       "limit": limit, "seed": seed})
    if json_:
        print_json({"run": str(run.path), "metrics": run.metrics()["answers"]})
    else:
        typer.echo((run.path / "summary.md").read_text())
        typer.echo(f"run directory: {run.path} (answers.jsonl feeds `ragtune eval judge --answers`)")


def _score_predictions(dataset: Path, examples, predictions: Path, home, json_: bool) -> None:
    from ragtune.config import ragtune_home
    from ragtune.evaluate.qa import score_answer, score_answers
    from ragtune.evaluate.runs import RunDir, markdown_table

    try:
        preds = json.loads(predictions.read_text())
    except (OSError, ValueError) as e:
        fail(f"{predictions}: not a JSON object of question id -> answer ({e})")
    if not isinstance(preds, dict):
        fail(f"{predictions}: expected a JSON object of question id -> answer")
    scored = [ex for ex in examples if ex.id in preds]
    if not scored:
        fail(f"{predictions}: none of its ids are questions of {dataset}")
    agg = score_answers([str(preds[ex.id]) for ex in scored], [ex.answers for ex in scored])
    run = RunDir.create(ragtune_home(home) / "runs", "qa", {"dataset": str(dataset.resolve()),
                                                             "predictions": str(predictions.resolve()),
                                                             "questions": len(examples), "answered": len(scored)})
    per = {m: {ex.id: score_answer(str(preds[ex.id]), ex.answers)[m] for ex in scored}
           for m in ("exact_match", "f1", "subset_match")}
    run.write_metrics({"answers": agg.to_dict()}, {"answers": per})
    rows = [[k, v if v is not None else "n/a"] for k, v in agg.to_dict().items()]
    run.write_summary(f"# QA evaluation: {dataset.name}\n\n{markdown_table(['metric', 'value'], rows)}\n")
    if json_:
        print_json({"run": str(run.path), "metrics": agg.to_dict(), "missing_predictions": len(examples) - len(scored)})
    else:
        typer.echo((run.path / "summary.md").read_text())
        if len(scored) < len(examples):
            err.print(f"[yellow]note:[/] {len(examples) - len(scored)} questions had no prediction and were not scored")


@app.command()
def preferences(
    data: Annotated[Path, typer.Option("--data", help="preference pairs (prompt, chosen, rejected; "
                                                       "`ragtune feedback export`), newer than the adapter's training")],
    adapter: Annotated[str, typer.Option("--adapter", help="adapter name or folder (a refused one is scored too)")],
    collection: Annotated[Optional[str], typer.Option(
        "--collection", "-c", help="take the base model from this collection's generator.model")] = None,
    base: Annotated[Optional[str], typer.Option(help="the adapter's base model (default: the collection's)")] = None,
    max_length: Annotated[int, typer.Option(help="tokens per prompt + answer, as the adapter trained")] = 1024,
    home: HomeOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Re-ask a preference adapter's gate on pairs it never trained on: held-out preference accuracy
    (chosen likelier than rejected) of the base and of the adapter, paired."""
    from ragtune.data.beir import iter_jsonl
    from ragtune.evaluate.preference import score_adapter

    if not data.is_file():
        fail(f"--data {data}: no such file; write one with `ragtune feedback export --out DIR`")
    if base is None:
        if collection is None:
            fail("give --base MODEL or --collection NAME (whose generator.model the adapter was trained on)")
        from ragtune.collection import Collection

        with Collection.open(home, collection) as coll:
            base = coll.pipeline.generator.model
    verdict = score_adapter(base, adapter, list(iter_jsonl(data)), max_length, str(home) if home else None)
    if json_:
        print_json(verdict)
        return
    w, t, l_ = verdict["wins_ties_losses"]
    typer.echo(f"{verdict['why']} (won/same/lost {w}/{t}/{l_}; mean margin {verdict['margin_before']:+.2f} → "
               f"{verdict['margin_after']:+.2f} nats"
               + (f"; {verdict['too_long']} pairs too long for --max-length left out" if verdict["too_long"] else "")
               + ")")


@app.command()
def judge(
    answers: Annotated[Path, typer.Option("--answers", help="JSONL: id, question, answer, contexts [..], reference")],
    base_url: Annotated[str, typer.Option("--base-url", envvar="RAGTUNE_JUDGE_BASE_URL",
                                          help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1")],
    model: Annotated[str, typer.Option("--model", envvar="RAGTUNE_JUDGE_MODEL", help="judge model name")],
    api_key: Annotated[str, typer.Option("--api-key", envvar="RAGTUNE_JUDGE_API_KEY")] = "none",
    repeats: Annotated[int, typer.Option(help="judge each item this many times; the spread is reported")] = 1,
    home: HomeOpt = None,
    json_: JsonOpt = False,
) -> None:
    """LLM-as-a-judge: faithfulness to the contexts and correctness against the reference (1-5)."""
    from ragtune.config import ragtune_home
    from ragtune.evaluate.judge import Judge, judge_answers

    judge_ = Judge.openai(base_url, model, api_key=api_key, repeats=repeats)
    run, metrics = judge_answers(answers, judge_, ragtune_home(home) / "runs",
                                 {"judge_model": model, "base_url": base_url, "repeats": repeats})
    if json_:
        print_json({"run": str(run.path), "metrics": metrics})
    else:
        typer.echo((run.path / "summary.md").read_text())


@app.command("ingest")
def ingest_(
    collection: Annotated[str, typer.Option("--collection", "-c", help="collection name")],
    home: HomeOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Completeness, freshness and correctness of a collection's index against its sources."""
    from ragtune.collection import Collection
    from ragtune.evaluate.ingestion import evaluate_ingestion

    with Collection.open(home, collection) as coll:
        report = evaluate_ingestion(coll)
    if json_:
        print_json(report)
        return
    c, f, k = report["completeness"], report["freshness"], report["correctness"]
    typer.echo(f"completeness: {c['source_files_indexed']}/{c['source_files_found']} source files indexed, "
               f"{c['indexed']} documents indexed, {c['pending']} pending, {c['failed_last_run']} failed in the last run; "
               f"chunks {c['chunks_store']} in store vs {c['chunks_manifest']} in manifest")
    typer.echo(f"freshness: {f['stale_documents']} documents changed since indexing; "
               f"index lag p50 {f['index_lag_seconds_p50']}s, max {f['index_lag_seconds_max']}s")
    typer.echo(f"correctness: {k['mismatched_chunks']} of {k['checked_chunks']} chunks differ from their source span "
               f"({k['skipped_chunks']} skipped: source changed or gone)")


@app.command()
def compare(
    a: Annotated[str, typer.Argument(help="run directory, optionally RUN:system (e.g. runs/X:bm25)")],
    b: Annotated[str, typer.Argument(help="run directory, optionally RUN:system")],
    measures: Annotated[Optional[str], typer.Option(help="comma-separated measures (default: all shared)")] = None,
    plot: Annotated[Optional[Path], typer.Option(help="write a per-query delta plot (PNG) here")] = None,
    json_: JsonOpt = False,
) -> None:
    """Compare two runs per query: means, delta with 95% CI, paired randomisation p-value, wins/ties/losses."""
    from ragtune.evaluate.compare import compare_paired, plot_deltas
    from ragtune.evaluate.runs import markdown_table

    (name_a, sys_a, pq_a), (name_b, sys_b, pq_b) = _pick(a), _pick(b)
    shared = [m for m in pq_a if m in pq_b]
    if measures:
        wanted = [m.strip() for m in measures.split(",")]
        missing = [m for m in wanted if m not in shared]
        if missing:
            fail(f"--measures: {missing} not in both runs; shared: {shared}")
        shared = wanted
    results = {m: compare_paired(pq_a[m], pq_b[m]) for m in shared}
    if plot and shared:
        plot_deltas(pq_a[shared[0]], pq_b[shared[0]], shared[0], f"{name_a}:{sys_a}", f"{name_b}:{sys_b}", plot)
    if json_:
        print_json({"a": f"{name_a}:{sys_a}", "b": f"{name_b}:{sys_b}", "measures": {m: c.to_dict() for m, c in results.items()}})
        return
    rows = [[m, c.mean_a, c.mean_b, f"{c.delta:+.4f}", f"[{c.ci_low:+.4f}, {c.ci_high:+.4f}]",
             f"{c.p_value:.4f}", f"{c.wins}/{c.ties}/{c.losses}"] for m, c in results.items()]
    typer.echo(f"A = {name_a}:{sys_a}\nB = {name_b}:{sys_b}\n")
    typer.echo(markdown_table(["measure", "A", "B", "B-A", "95% CI", "p (paired perm.)", "B wins/ties/losses"], rows))


def _pick(spec: str):
    from ragtune.evaluate.runs import RunDir

    path, _, system = spec.partition(":")
    run = RunDir.open(path)
    pq = run.per_query()
    if not system:
        if len(pq) != 1:
            fail(f"{path} holds systems {sorted(pq)}; name one as {path}:SYSTEM")
        system = next(iter(pq))
    if system not in pq:
        fail(f"{path} has no system {system!r}; it has {sorted(pq)}")
    return run.id, system, pq[system]
