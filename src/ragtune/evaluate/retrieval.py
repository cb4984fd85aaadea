"""``ragtune eval retrieval``: index a BEIR corpus, run every retrieval mode, score, write a run.

Example (SciFact test, the three modes, into a reusable named collection):
    >>> from ragtune.evaluate.retrieval import evaluate_retrieval
    >>> run = evaluate_retrieval("../shared/data/scifact", modes=["bm25"], collection="scifact")  # doctest: +SKIP
    >>> run.metrics()["bm25"]["nDCG@10"]  # doctest: +SKIP
    0.66...
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable

from ragtune.collection import Collection
from ragtune.config import PipelineConfig, ragtune_home
from ragtune.data.beir import load_beir
from ragtune.data.trec import write_run
from ragtune.errors import InputError
from ragtune.evaluate.ir import DEFAULT_MEASURES, doc_run, per_query, score_run
from ragtune.evaluate.runs import RunDir, markdown_table
from ragtune.ingest.sync import ingest
from ragtune.retrieve import Searcher
from ragtune.types import Acl, Principal

RECALL_CURVE = [1, 3, 5, 10, 20, 50, 100]


def evaluate_retrieval(
    dataset: str | Path,
    split: str = "test",
    modes: tuple[str, ...] | list[str] = ("bm25", "dense", "hybrid"),
    home: str | Path | None = None,
    collection: str | None = None,
    pipeline: PipelineConfig | None = None,
    depth: int = 100,
    overrides: list[str] | None = None,
    measures: list[str] = DEFAULT_MEASURES,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> RunDir:
    """Score each mode on ``split``. With ``collection`` the corpus is indexed into that named
    collection (re-runs reuse it: unchanged documents are not embedded again); without it, into
    a throw-away collection that is deleted afterwards. ``pipeline`` / ``overrides`` apply to this
    run; a collection it creates is bound only to what its index is built with.

    A corpus record that cannot be loaded (no text, bad JSON) is skipped and counted, as in
    ingestion; the rest is scored (``corpus_failed`` in the run's config names how many)."""
    dataset = Path(dataset)
    ds = load_beir(dataset, split, skip_bad=True)
    home_path = ragtune_home(home)
    scratch = None
    if collection is None:
        scratch = tempfile.TemporaryDirectory(prefix="ragtune-eval-")
        index_home, name = Path(scratch.name), "eval"
    else:
        index_home, name = home_path, collection
    try:
        with Collection.for_call(index_home, name, overrides, base=pipeline, create=True) as coll:
            report = ingest(coll, dataset, Acl(public=True), on_progress)
            if report.failed and report.failed == report.seen:
                raise InputError(f"{dataset}: no corpus record could be loaded, e.g. {report.failures[0]}")
            run_dir = RunDir.create(home_path / "runs", "retrieval", {
                "dataset": str(dataset.resolve()), "split": split, "modes": list(modes), "depth": depth,
                "collection": collection, "queries": len(ds.queries), "corpus": len(ds.corpus),
                "corpus_failed": report.failed, "corpus_failures": report.failures[:20],
                "chunks": coll.store.count(), "pipeline": coll.pipeline.shown(),
            })
            searcher = Searcher(coll)
            qids = sorted(ds.queries)
            metrics, pq = {}, {}
            curve_measures = [f"R@{k}" for k in RECALL_CURVE]
            for m_i, mode in enumerate(modes):
                run = {}
                for n, q in enumerate(qids, start=1):
                    # ~3 chunks per document leaves `depth` distinct documents after MaxP.
                    hits = searcher.search(ds.queries[q], Principal(), mode=mode, k=3 * depth, with_ranks=False)
                    run[q] = doc_run(hits, depth)
                    if on_progress:
                        on_progress(f"queries ({mode})", n, len(qids))
                write_run(run, run_dir.path / f"run.{mode}.trec", tag=mode)
                all_measures = list(dict.fromkeys(list(measures) + curve_measures))
                metrics[mode] = score_run(ds.qrels, run, all_measures)
                pq[mode] = per_query(ds.qrels, run, list(measures))
    finally:
        if scratch is not None:
            scratch.cleanup()
    run_dir.write_metrics(metrics, pq)
    _plot_recall_curves(metrics, run_dir.path / "recall_at_k.png", title=f"{dataset.name} {split}")
    rows = [[mode] + [metrics[mode][m] for m in measures] for mode in modes]
    run_dir.write_summary(
        f"# Retrieval evaluation: {dataset.name} ({split})\n\n"
        f"{len(ds.queries)} queries, {len(ds.corpus)} documents, run `{run_dir.id}`.\n\n"
        + (f"{report.failed} corpus records could not be loaded and were skipped "
           f"(e.g. {report.failures[0][0]}: {report.failures[0][1]}).\n\n" if report.failed else "")
        + markdown_table(["mode"] + list(measures), rows) + "\n\n![recall@k](recall_at_k.png)\n"
    )
    return run_dir


def _plot_recall_curves(metrics: dict[str, dict[str, float]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for mode, values in metrics.items():
        ax.plot(RECALL_CURVE, [values[f"R@{k}"] for k in RECALL_CURVE], marker="o", label=mode)
    ax.set_xscale("log")
    ax.set_xticks(RECALL_CURVE, [str(k) for k in RECALL_CURVE])
    ax.set_xlabel("k (documents)")
    ax.set_ylabel("recall@k")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_title(f"Recall@k — {title}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
