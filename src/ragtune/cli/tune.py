from __future__ import annotations

from typing import Annotated

import typer

from ragtune.cli.common import CollectionOpt, HomeOpt, JsonOpt, print_json, progress_bars


def tune(
    collection: CollectionOpt,
    name: Annotated[str, typer.Option("--name", help="synthetic set whose dev questions decide (synth/<name>/)")] = "default",
    apply: Annotated[bool, typer.Option("--apply", help="write the winning settings, if they win significantly")] = False,
    home: HomeOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Tune retrieval without labels: mode, fusion and weights, retriever depth, rerank depth, chosen
    on the held-out synthetic questions (keyword-poor half, against BM25's bias) and confirmed by a
    paired test on others; every candidate is reported."""
    from ragtune.cli.common import fail
    from ragtune.collection import Collection
    from ragtune.evaluate.tune import apply_setting, tune_pipeline

    with Collection.open(home, collection) as coll, progress_bars(disable=json_) as on_progress:
        folder = coll.dir / "synth" / name
        if not (folder / "qrels" / "dev.tsv").exists():
            fail(f"no filtered synthetic questions in {folder}: run `ragtune synth queries -c {collection}` "
                 f"and `ragtune synth filter -c {collection}` first (or `ragtune adapt`)")
        report = tune_pipeline(coll, folder, on_progress=on_progress)
        applied = bool(apply and report.chosen)
        if applied:
            apply_setting(coll, report.chosen)
    if json_:
        print_json({**report.to_dict(), "applied": applied})
        return
    typer.echo(f"{report.questions} synthetic dev questions (lexical overlap with their chunk {report.lexical_overlap:.2f}; "
               f"chosen on {report.decision_questions} keyword-poor ones, confirmed on as many others)")
    typer.echo(f"current settings: MRR@10 {report.current_mrr:.3f}")
    for c in report.candidates:
        typer.echo(f"  {', '.join(f'{k}={v}' for k, v in c.setting.items()):<75} MRR@10 {c.mrr:.3f} "
                   f"(all {c.mrr_all:.3f})  Δ {c.delta:+.3f}  p {c.p_value:.3f}")
    if report.chosen:
        verdict = "applied" if applied else "re-run with --apply to use it"
        typer.echo(f"better: {report.chosen} (Δ {report.delta:+.3f}, p = {report.p_value:.4f}) — {verdict}")
    else:
        typer.echo(f"no setting beats the current one significantly (best Δ {report.delta:+.3f}, p = {report.p_value:.4f}): "
                   "nothing changed")
