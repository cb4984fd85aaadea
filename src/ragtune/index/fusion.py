"""Rank fusion done by ragtune, for engines that cannot fuse inside the query (PostgreSQL).

Same formulas as Qdrant's: RRF ``Σ w_r / (k + rank_r)`` and DBSF (each list's scores normalised
by mean ± 3 standard deviations, then summed). The inputs are already filtered by the engine, so
fusion never sees a chunk the principal may not see.

Example:
    >>> from ragtune.index.base import StoreHit
    >>> from ragtune.index.fusion import fuse
    >>> dense = [StoreHit("a", 0.9, {}), StoreHit("b", 0.8, {})]
    >>> bm25 = [StoreHit("b", 7.0, {}), StoreHit("c", 5.0, {})]
    >>> [(h.point_id, h.ranks) for h in fuse({"dense": dense, "bm25": bm25}, k=3)]
    [('b', {'dense': 2, 'bm25': 1, 'hybrid': 1}), ('a', {'dense': 1, 'hybrid': 2}), ('c', {'bm25': 2, 'hybrid': 3})]
"""

from __future__ import annotations

import statistics
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, TypeVar

from ragtune.index.base import StoreHit

K = TypeVar("K", bound=Hashable)


def rrf_scores(ranked: Mapping[str, Sequence[K]], rrf_k: int = 60, weights: dict[str, float] | None = None) -> dict[K, float]:
    """Reciprocal rank fusion, ``Σ_r w_r / (rrf_k + rank_r)``, of ranked id lists keyed by list
    name: the one RRF in ragtune (store fusion here, multi-query fusion in ``retrieve``).

    >>> rrf_scores({"a": ["x", "y"], "b": ["y"]}, rrf_k=1) == {"x": 1 / 2, "y": 1 / 3 + 1 / 2}
    True
    """
    scores: dict[K, float] = {}
    for name, ids in ranked.items():
        w = (weights or {}).get(name, 1.0)
        for rank, item in enumerate(ids, start=1):
            scores[item] = scores.get(item, 0.0) + w / (rrf_k + rank)
    return scores


def fuse(results: dict[str, list[StoreHit]], k: int, method: str = "rrf", rrf_k: int = 60,
         weights: dict[str, float] | None = None) -> list[StoreHit]:
    """Fuse ranked lists keyed by retriever name; each hit keeps every retriever's rank and score.
    ``weights`` (default 1 each) scale each list's share: ``Σ w / (rrf_k + rank)`` under RRF,
    ``Σ w · normalised score`` under DBSF (distribution-based score fusion: each list's scores
    mapped from mean ± 3 standard deviations to 0..1, as Qdrant does)."""
    fused: dict[str, StoreHit] = {}
    for name, hits in results.items():
        norm = _dbsf_normaliser([h.score for h in hits]) if method == "dbsf" else None
        w = (weights or {}).get(name, 1.0)
        for rank, h in enumerate(hits, start=1):
            out = fused.setdefault(h.point_id, StoreHit(h.point_id, 0.0, h.payload))
            out.ranks[name], out.scores[name] = rank, h.score
            if norm is not None:
                out.score += w * norm(h.score)
    if method == "rrf":
        scores = rrf_scores({name: [h.point_id for h in hits] for name, hits in results.items()}, rrf_k, weights)
        for point_id, hit in fused.items():
            hit.score = scores[point_id]
    ranked = sorted(fused.values(), key=lambda h: (-h.score, h.point_id))[:k]
    for rank, h in enumerate(ranked, start=1):
        h.ranks["hybrid"] = rank
        h.scores["hybrid"] = h.score
    return ranked


def _dbsf_normaliser(scores: list[float]):
    if not scores:
        return lambda s: 0.0
    mean = statistics.fmean(scores)
    spread = 3 * statistics.pstdev(scores)
    low, high = mean - spread, mean + spread
    return lambda s: 0.5 if high == low else (s - low) / (high - low)


def add_dense_scores(hits: list[StoreHit], vectors: dict[str, Any], query_vector) -> None:
    """Record on each hit whose stored (unit) vector is in ``vectors`` its cosine with the query:
    the dense score a dense search would have given it, without running one."""
    import numpy as np

    q = np.asarray(query_vector, dtype=np.float32)
    q = q / (float(np.linalg.norm(q)) or 1.0)
    for h in hits:
        v = vectors.get(h.point_id)
        if v is not None:
            v = np.asarray(v, dtype=np.float32)
            h.scores["dense"] = float(v @ q / (float(np.linalg.norm(v)) or 1.0))


def add_ranks(hits: list[StoreHit], name: str, points) -> None:
    """Record on each fused hit its rank and score in one retriever's ranked ``points`` (objects
    with ``.id`` and ``.score``, as both Qdrant engines return them)."""
    found = {str(p.id): (i, float(p.score)) for i, p in enumerate(points, start=1)}
    for h in hits:
        if h.point_id in found:
            h.ranks[name], h.scores[name] = found[h.point_id]
