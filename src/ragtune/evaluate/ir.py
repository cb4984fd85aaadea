"""Retrieval runs and IR metrics. Metrics come from ``ir-measures`` (pytrec_eval underneath),
not hand-written code: P@k, R@k, RR@k (MRR), AP (MAP), nDCG@k and Success@k (hit rate).

Chunks are what the index ranks; relevance is judged per document, so a chunk ranking becomes
a document ranking by each document's best chunk (MaxP).

Example:
    >>> from ragtune.evaluate.ir import score_run
    >>> qrels = {"q1": {"d1": 1}}
    >>> run = {"q1": {"d2": 2.0, "d1": 1.0}}
    >>> round(score_run(qrels, run, ["RR@10", "nDCG@10"])["RR@10"], 3)
    0.5
"""

from __future__ import annotations

from typing import Iterable

from ragtune.types import Hit

DEFAULT_MEASURES = ["nDCG@10", "R@100", "RR@10", "P@10", "R@10", "AP@100", "Success@10"]


def doc_run(hits: Iterable[Hit], depth: int) -> dict[str, float]:
    """Best chunk per document, in rank order, as a descending score run of ``depth`` documents."""
    out: dict[str, float] = {}
    for rank, hit in enumerate(hits):
        if hit.doc_id not in out:
            out[hit.doc_id] = -float(rank)  # rank-based so fused/raw scores need no calibration
            if len(out) == depth:
                break
    return out


def _complete(qrels, run):
    # pytrec_eval averages only over queries present in the run; a placeholder keeps an empty
    # result list in the mean as a zero instead of silently dropping the query.
    return {q: run.get(q) or {"__no_result__": 0.0} for q in qrels}


def score_run(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]],
              measures: list[str] = DEFAULT_MEASURES) -> dict[str, float]:
    """Mean of each measure over the queries in ``qrels`` (a query missing from ``run`` scores 0)."""
    import ir_measures

    parsed = [ir_measures.parse_measure(m) for m in measures]
    agg = ir_measures.calc_aggregate(parsed, qrels, _complete(qrels, run))
    return {str(m): float(agg[m]) for m in parsed}


def per_query(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]],
              measures: list[str] = DEFAULT_MEASURES) -> dict[str, dict[str, float]]:
    """``{measure: {query id: value}}`` for every query in ``qrels``."""
    import ir_measures

    parsed = [ir_measures.parse_measure(m) for m in measures]
    out: dict[str, dict[str, float]] = {str(m): {q: 0.0 for q in qrels} for m in parsed}
    for m in ir_measures.iter_calc(parsed, qrels, _complete(qrels, run)):
        out[str(m.measure)][m.query_id] = float(m.value)
    return out
