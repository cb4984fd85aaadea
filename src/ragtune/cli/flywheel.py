"""``ragtune flywheel``: retrain what usage says should be retrained, behind the gates."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ragtune.cli.common import HomeOpt, JsonOpt, err, fail, print_json, progress_bars

app = typer.Typer(help="Scheduled adaptation from feedback and new documents: run, history, rollback.")


@app.callback(invoke_without_command=True)
def flywheel(
    ctx: typer.Context,
    collection: Annotated[Optional[str], typer.Option("--collection", "-c", help="collection name")] = None,
    force: Annotated[bool, typer.Option("--force", help="run now even if nothing says it is due")] = False,
    tasks: Annotated[Optional[list[str]], typer.Option("--task", help="tune | embedder | reader | preferences (DPO on the feedback's pairs: "
                                                "opt-in, an LLM's training) (repeatable; default the first three)")] = None,
    synthetic: Annotated[bool, typer.Option(
        "--synthetic/--no-synthetic", help="embedder task: also write synthetic questions (an LLM call per chunk)")] = True,
    max_chunks: Annotated[int, typer.Option(help="chunks to write synthetic questions for")] = 300,
    min_new_feedback: Annotated[int, typer.Option(help="new feedback since the last run that makes one due")] = 20,
    min_new_documents: Annotated[int, typer.Option(help="new documents since the last run that make one due")] = 50,
    min_interval_minutes: Annotated[float, typer.Option(help="never run sooner than this after the last run")] = 60.0,
    min_feedback_queries: Annotated[int, typer.Option(help="newer feedback questions needed for them to decide")] = 20,
    budget_minutes: Annotated[Optional[float], typer.Option(help="size the synthetic set to this many minutes")] = None,
    test_fraction: Annotated[float, typer.Option(help="newest share of the feedback each gate judges on")] = 0.2,
    epochs: Annotated[float, typer.Option(help="embedder and reader training epochs")] = 1.0,
    batch_size: Annotated[int, typer.Option(help="embedder training batch size")] = 32,
    reader_base: Annotated[Optional[str], typer.Option(
        help="reader task: start from this reader (a SQuAD-trained folder or hub id) instead of the collection's own "
             "trained reader or, with none, the embedder's encoder")] = None,
    reader_retrieved: Annotated[int, typer.Option(
        min=0, help="reader task: also train each question over its top-K retrieved chunks (0: the feedback's passages only)")] = 8,
    reader_gate: Annotated[str, typer.Option(
        help="reader task: judge on the newer questions 'served' (searched and answered as `ask` does) or on their "
             "feedback passage ('gold')")] = "served",
    home: HomeOpt = None,
    json_: JsonOpt = False,
) -> None:
    """One turn of the flywheel on -c C: if enough new feedback or documents came in since the last
    run (and the minimum interval has passed), export the feedback, tune the retrieval settings
    and adapt the embedder on the users' confirmed questions, train a reader on their QA rows, and promote each only where it
    wins its held-out gate. Every run is a report under collections/C/flywheel/."""
    if ctx.invoked_subcommand is not None:
        return
    if collection is None:
        fail("ragtune flywheel: give the collection, -c NAME (or a subcommand: history, rollback)")
    if reader_gate not in ("served", "gold"):
        fail(f"--reader-gate {reader_gate!r}: choose served or gold")
    from ragtune.collection import Collection
    from ragtune.flywheel import DEFAULT_TASKS, FlywheelConfig, run_flywheel
    from ragtune.models.generator import make_generator
    from ragtune.train.embedder import EmbedderTrainConfig
    from ragtune.train.reader import ReaderTrainConfig

    config = FlywheelConfig(min_new_feedback=min_new_feedback, min_new_documents=min_new_documents,
                            min_interval_minutes=min_interval_minutes, tasks=tuple(tasks or DEFAULT_TASKS),
                            synthetic=synthetic, max_chunks=max_chunks, budget_minutes=budget_minutes,
                            min_feedback_queries=min_feedback_queries, test_fraction=test_fraction,
                            embedder=EmbedderTrainConfig(epochs=epochs, batch_size=batch_size),
                            reader=ReaderTrainConfig(epochs=max(epochs, 2.0)), reader_base=reader_base,
                            reader_retrieved=reader_retrieved, reader_gate_served=reader_gate == "served")
    with Collection.open(home, collection) as coll, progress_bars(disable=json_) as on_progress:
        generator = make_generator(coll.pipeline.generator, home) if synthetic and "embedder" in config.tasks else None
        record = run_flywheel(coll, home, config, generator, force, on_progress,
                              on_step=lambda s: err.print(f"[bold]step:[/] {s}") if not json_ else None)
        report = coll.dir / "flywheel" / str(record.get("run", "")) / "report.md"
    if json_:
        print_json(record)
    elif not record["ran"]:
        typer.echo(f"not due: {record['trigger']['why_not']} (--force runs anyway)")
    else:
        typer.echo(report.read_text())


@app.command()
def history(
    collection: Annotated[str, typer.Option("--collection", "-c", help="collection name")],
    plot: Annotated[Optional[Path], typer.Option("--plot", help="write quality over time here (PNG)")] = None,
    home: HomeOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Every flywheel run of -c C: when, why, each gate's decision with its held-out measure,
    index and reader versions before and after; rollbacks too."""
    from ragtune.collection import Collection
    from ragtune.evaluate.runs import markdown_table
    from ragtune.flywheel import History, plot_history

    with Collection.open(home, collection) as coll:
        runs = History(coll).runs()
    if plot is not None:
        plot_history(runs, plot)
    if json_:
        print_json(runs)
        return
    if not runs:
        typer.echo(f"no flywheel runs on {collection!r} yet: `ragtune flywheel -c {collection}`")
        return
    typer.echo(markdown_table(["run", "kind", "index", "tune", "embedder", "reader"], [history_row(r) for r in runs]))
    if plot is not None:
        typer.echo(f"plot: {plot}")


def history_row(r: dict) -> list[str]:
    if r["kind"] == "rollback":
        return [r["run"], "rollback", f"→ {r['index_after']}", "", ", ".join(r["undone"]) or "nothing",
                r["reader_after"] or "sentence"]
    cells = []
    for name in ("tune", "embedder", "reader"):
        t = r["tasks"].get(name)
        if not t:
            cells.append("—")
        elif not t.get("ran"):
            cells.append(f"skipped: {t['why']}")
        elif name == "tune":
            cells.append(f"{'applied ' + str(t['chosen']) if t['promoted'] else 'kept'} (MRR@10 Δ {t['delta']:+.4f}, "
                         f"p {t['p']:.3f}, {t['confirm_questions']} q)")
        elif name == "embedder":
            s = next((s for s in t["signals"] if s["name"] == t["decided_by"]), t["signals"][0])
            cells.append(f"{'promoted' if t['promoted'] else 'refused'} ({s['name']}, {s['queries']} q, "
                         f"Δ {s['delta']:+.4f}, p {s['p']:.3f})")
        else:
            g = t["gate"]
            cells.append(f"{'applied' if t['promoted'] else 'refused'} (F1 {g['baseline_scores']['F1']:.3f} → "
                         f"{g['candidate_scores']['F1']:.3f}, p {g['p_value']:.3f})")
    return [r["run"], "run" + (" (forced)" if r.get("forced") else ""), f"{r['index_before']} → {r['index_after']}", *cells]


@app.command()
def rollback(
    collection: Annotated[str, typer.Option("--collection", "-c", help="collection name")],
    reason: Annotated[str, typer.Option(help="recorded in the history")] = "",
    home: HomeOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Undo what the last flywheel run promoted (its index version and its reader)."""
    from ragtune.collection import Collection
    from ragtune.flywheel import rollback as rollback_

    with Collection.open(home, collection) as coll:
        record = rollback_(coll, home, reason)
    if json_:
        print_json(record)
    elif not record["undone"]:
        typer.echo(f"run {record['run']} promoted nothing; nothing changed")
    else:
        typer.echo("; ".join(f"{k}: {v['from']} → {v['to'] or 'sentence baseline'}" for k, v in record["undone"].items()))
