"""Does the rerank stage help? The gate every trained reranker passes before it is switched on.

For each held-out question of a BEIR folder (the synthetic set's ``dev`` split: questions no
model trained on), the collection's own fused retrieval returns the top ``depth`` chunks; the
reciprocal rank of the question's chunk is taken in that order and after the reranker rescored
them, and the two are compared with the paired randomisation test. The reranker is enabled only
when it is better with p < alpha — the rule the embedder's promotion uses. The gate also chooses
how much the fused order still counts beside the reranker's (``reranker.first_stage_weight``),
on one half of the questions for the other, so the test is not flattered by that choice.

Example:
    >>> from ragtune.evaluate.rerank import rerank_gate
    >>> gate = rerank_gate(collection, "synth/default", "models/reranker/handbook/v1")  # doctest: +SKIP
    >>> gate.enable, gate.mrr_before, gate.mrr_after  # doctest: +SKIP
    (True, 0.41, 0.63)
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from ragtune.collection import Collection
from ragtune.data.beir import load_beir
from ragtune.errors import InputError
from ragtune.evaluate.compare import compare_paired
from ragtune.retrieve import Searcher
from ragtune.retrieve.rerank import Reranker
from ragtune.types import ServicePrincipal

# The first stage's weight beside the reranker's in the final order (``reranker.first_stage_weight``):
# 0 is the reranker's order alone; the others blend the two orders. 4 lets a reranker that is weaker
# than the fused order alone (a self-trained one out of its domain) still break the fused order's ties.
WEIGHTS: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 4.0)


@dataclass
class RerankGate:
    queries: int
    depth: int
    mrr_before: float
    mrr_after: float  # each question ranked with the weight chosen on the *other* half (cross-fitted)
    delta: float
    ci: tuple[float, float]
    p_value: float
    wins_ties_losses: tuple[int, int, int]
    ms_per_query: float  # the reranker's own time per question at this depth
    enable: bool
    first_stage_weight: float = 0.0  # the weight to serve with: the best on all the questions
    mrr_by_weight: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def reciprocal_rank(chunk_ids: list[str], gold: set[str]) -> float:
    return next((1.0 / r for r, c in enumerate(chunk_ids, start=1) if c in gold), 0.0)


def cross_fitted(per_weight: dict[float, dict[str, float]]) -> tuple[dict[str, float], float]:
    """Each question's score under the weight that won on the other half of the questions (two
    folds), so the paired test judges "choose the weight, then rerank" without the optimism of
    choosing on the questions it is judged on; and the weight that wins on all of them.

    >>> rr = {0.0: {"a": 1.0, "b": 0.0, "c": 0.0, "d": 0.5}, 1.0: {"a": 0.5, "b": 1.0, "c": 1.0, "d": 1.0}}
    >>> cross_fitted(rr)  # weight 1 wins on {a, c} and on {b, d}
    ({'a': 0.5, 'c': 1.0, 'b': 1.0, 'd': 1.0}, 1.0)
    >>> cross_fitted({0.0: {"a": 1.0, "b": 0.0}, 1.0: {"a": 0.0, "b": 1.0}})  # each half's choice fails the other
    ({'a': 0.0, 'b': 0.0}, 0.0)
    """
    qids = sorted(next(iter(per_weight.values())))
    folds = [qids[0::2], qids[1::2]]

    def best(on: list[str]) -> float:
        # Ties go to the smaller weight, listed first (the reranker's own order is the simplest).
        return max(per_weight, key=lambda w: (sum(per_weight[w][q] for q in on), -w))

    out: dict[str, float] = {}
    for fold, other in ((folds[0], folds[1]), (folds[1], folds[0])):
        w = best(other) if other else best(fold)
        out.update({q: per_weight[w][q] for q in fold})
    return out, best(qids)


def rerank_gate(collection: Collection, folder: str | Path, reranker: str | Reranker, depth: int = 50,
                split: str = "dev", alpha: float = 0.05, weights: tuple[float, ...] = WEIGHTS,
                on_progress: Callable[[str, int, int], None] | None = None) -> RerankGate:
    """Fused top-``depth`` vs the same list reranked, question by question; ``reranker`` is a
    CrossEncoder folder / hub id or any object with ``rerank(query, hits)``. With several
    ``weights`` (and a reranker that exposes ``scores``), the first stage's weight in the final
    order is chosen too, cross-fitted (``cross_fitted``)."""
    from ragtune.config import RerankerConfig
    from ragtune.retrieve.rerank import CrossEncoderReranker, order_by

    ds = load_beir(folder, split)
    if len(ds.queries) < 2:
        raise InputError(f"{folder}: {len(ds.queries)} {split} questions; the rerank gate needs at least 2")
    model = reranker if not isinstance(reranker, str) else CrossEncoderReranker(
        RerankerConfig(model=reranker, depth=depth), collection.pipeline.embedder.device)
    scorer = getattr(model, "scores", None)
    if scorer is None:
        weights = (0.0,)
    searcher = Searcher(collection)  # the pipeline's fused retrieval, without a rerank stage
    principal = ServicePrincipal(acl=tuple(collection.acl_tokens()))
    before: dict[str, float] = {}
    after: dict[float, dict[str, float]] = {w: {} for w in weights}
    seconds = 0.0
    for n, (qid, text) in enumerate(sorted(ds.queries.items()), start=1):
        hits = searcher.search(text, principal, k=depth, with_ranks=False, rerank=False)
        gold = set(ds.qrels[qid])
        before[qid] = reciprocal_rank([h.chunk_id for h in hits], gold)
        start = time.perf_counter()
        scores = scorer(text, hits) if scorer is not None else None
        if scores is None:
            reranked = {0.0: model.rerank(text, list(hits))}
        seconds += time.perf_counter() - start
        if scores is not None:
            reranked = {w: order_by(list(hits), scores, w) for w in weights}
        for w, order in reranked.items():
            after[w][qid] = reciprocal_rank([h.chunk_id for h in order], gold)
        if on_progress:
            on_progress("rerank gate", n, len(ds.queries))
    judged, chosen = cross_fitted(after) if len(weights) > 1 else (after[weights[0]], weights[0])
    c = compare_paired(before, judged)
    return RerankGate(len(before), depth, c.mean_a, c.mean_b, c.delta, (c.ci_low, c.ci_high), c.p_value,
                      (c.wins, c.ties, c.losses), round(1000 * seconds / len(before), 1),
                      enable=c.delta > 0 and c.p_value < alpha, first_stage_weight=chosen,
                      mrr_by_weight={str(w): sum(v.values()) / len(v) for w, v in after.items()})
