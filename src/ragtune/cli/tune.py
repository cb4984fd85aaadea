from __future__ import annotations

from typing import Annotated, Optional

import typer

from ragtune.cli.common import CollectionOpt, ExamplesOpt, HomeOpt, JsonOpt, print_json, progress_bars, query_style


def tune(
    collection: CollectionOpt,
    name: Annotated[str, typer.Option("--name", help="synthetic set whose questions decide (synth/<name>/)")] = "default",
    apply: Annotated[bool, typer.Option("--apply", help="write the winning settings, if they win significantly")] = False,
    correction: Annotated[str, typer.Option(
        "--correction", help="none | keyword-poor (decide on questions sharing few words with their chunk) | "
                             "examples (weight toward --examples' lexical overlap)")] = "none",
    examples: ExamplesOpt = None,
    split: Annotated[Optional[str], typer.Option(
        "--split", help="dev or train (default: dev, and train too while no live model learned from it)")] = None,
    home: HomeOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Tune retrieval without labels: mode, fusion and weights, retriever depth, rerank depth, searched
    on the synthetic questions no live model learned from; cross-fitted test (each half's choice
    scored on the other half, paired), written with --apply only when it wins; every candidate is
    reported."""
    from ragtune.cli.common import fail
    from ragtune.collection import Collection
    from ragtune.errors import InputError
    from ragtune.evaluate.tune import apply_setting, tune_pipeline

    if correction == "examples" and examples is None:
        fail("--correction examples needs --examples FILE (up to 8 real queries, one per line)")
    if examples is not None and correction == "keyword-poor":
        fail("--examples weighs the questions (--correction examples); keyword-poor uses no examples: drop one")
    style = query_style(None, examples) if examples is not None else {}
    if style and correction == "none":
        correction = "examples"  # examples given: they are what the questions are weighted toward

    with Collection.open(home, collection) as coll, progress_bars(disable=json_) as on_progress:
        folder = coll.dir / "synth" / name
        if not (folder / "qrels" / "dev.tsv").exists():
            fail(f"no filtered synthetic questions in {folder}: run `ragtune synth queries -c {collection}` "
                 f"and `ragtune synth filter -c {collection}` first (or `ragtune adapt`)")
        try:
            report = tune_pipeline(coll, folder, split, on_progress=on_progress, correction=correction,
                                   examples=style.get("examples", ()))
        except InputError as e:
            fail(str(e))
        applied = bool(apply and report.chosen)
        if applied:
            apply_setting(coll, report.chosen)
    if json_:
        print_json({**report.to_dict(), "applied": applied})
        return
    weighed = {"none": "", "keyword-poor": " keyword-poor", "examples": " (weighted toward the examples)"}[report.correction]
    typer.echo(f"{report.questions} synthetic {'+'.join(report.splits)} questions (lexical overlap with their chunk "
               f"{report.lexical_overlap:.2f}"
               + (f"; the examples' with the chunks ranked first {report.examples_overlap:.2f}" if report.examples_overlap
                  is not None else "")
               + f"); a choice on each half of {2 * report.decision_questions}{weighed} ones, tested on the other half")
    typer.echo(f"current settings: MRR@10 {report.current_mrr:.3f}")
    for c in report.candidates:
        typer.echo(f"  {', '.join(f'{k}={v}' for k, v in c.setting.items()):<75} MRR@10 {c.mrr:.3f} "
                   f"(unweighted {c.mrr_all:.3f})  Δ {c.delta:+.3f}  p {c.p_value:.3f} (in-sample)")
    typer.echo("each half chose: " + "; ".join(str(f or "the current settings") for f in report.fold_choices))
    if report.chosen:
        verdict = "applied" if applied else "re-run with --apply to use it"
        typer.echo(f"better: {report.chosen} (held-out Δ {report.delta:+.3f}, p = {report.p_value:.4f}) — {verdict}")
    else:
        typer.echo(f"no setting beats the current one significantly (held-out Δ {report.delta:+.3f}, p = {report.p_value:.4f}): "
                   "nothing changed")
