"""Retrieval runs and IR metrics. Metrics come from ``ir-measures`` (pytrec_eval underneath),
not hand-written code.

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


def doc_run(hits: Iterable[Hit], depth: int) -> dict[str, float]:
    """Best chunk per document, in rank order, as a descending score run of ``depth`` documents."""
    out: dict[str, float] = {}
    for rank, hit in enumerate(hits):
        if hit.doc_id not in out:
            out[hit.doc_id] = -float(rank)  # rank-based so fused/raw scores need no calibration
            if len(out) == depth:
                break
    return out


def score_run(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]],
              measures: list[str]) -> dict[str, float]:
    """Mean of each measure over the queries in ``qrels`` (a query missing from ``run`` scores 0)."""
    import ir_measures

    parsed = [ir_measures.parse_measure(m) for m in measures]
    # pytrec_eval averages only over queries present in the run; a placeholder keeps an empty
    # result list in the mean as a zero instead of silently dropping the query.
    agg = ir_measures.calc_aggregate(parsed, qrels, {q: run.get(q) or {"__no_result__": 0.0} for q in qrels})
    return {str(m): float(agg[m]) for m in parsed}
