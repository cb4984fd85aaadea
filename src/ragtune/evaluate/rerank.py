"""Does the rerank stage help? The gate every trained reranker passes before it is switched on.

For each held-out question of a BEIR folder (the synthetic set's ``dev`` split: questions no
model trained on), the collection's own fused retrieval returns the top ``depth`` chunks; the
reciprocal rank of the question's chunk is taken in that order and after the reranker rescored
them, and the two are compared with the paired randomisation test. The reranker is enabled only
when it is better with p < alpha — the rule the embedder's promotion uses.

Example:
    >>> from ragtune.evaluate.rerank import rerank_gate
    >>> gate = rerank_gate(collection, "synth/default", "models/reranker/handbook/v1")  # doctest: +SKIP
    >>> gate.enable, gate.mrr_before, gate.mrr_after  # doctest: +SKIP
    (True, 0.41, 0.63)
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from ragtune.collection import Collection
from ragtune.data.beir import load_beir
from ragtune.errors import InputError
from ragtune.evaluate.compare import compare_paired
from ragtune.retrieve import Searcher
from ragtune.retrieve.rerank import Reranker
from ragtune.types import ServicePrincipal


@dataclass
class RerankGate:
    queries: int
    depth: int
    mrr_before: float
    mrr_after: float
    delta: float
    ci: tuple[float, float]
    p_value: float
    wins_ties_losses: tuple[int, int, int]
    ms_per_query: float  # the reranker's own time per question at this depth
    enable: bool

    def to_dict(self) -> dict:
        return asdict(self)


def reciprocal_rank(chunk_ids: list[str], gold: set[str]) -> float:
    return next((1.0 / r for r, c in enumerate(chunk_ids, start=1) if c in gold), 0.0)


def rerank_gate(collection: Collection, folder: str | Path, reranker: str | Reranker, depth: int = 50,
                split: str = "dev", alpha: float = 0.05,
                on_progress: Callable[[str, int, int], None] | None = None) -> RerankGate:
    """Fused top-``depth`` vs the same list reranked, question by question; ``reranker`` is a
    CrossEncoder folder / hub id or any object with ``rerank(query, hits)``."""
    from ragtune.config import RerankerConfig
    from ragtune.retrieve.rerank import CrossEncoderReranker

    ds = load_beir(folder, split)
    if len(ds.queries) < 2:
        raise InputError(f"{folder}: {len(ds.queries)} {split} questions; the rerank gate needs at least 2")
    model = reranker if not isinstance(reranker, str) else CrossEncoderReranker(
        RerankerConfig(model=reranker, depth=depth), collection.pipeline.embedder.device)
    searcher = Searcher(collection)  # the pipeline's fused retrieval, without a rerank stage
    principal = ServicePrincipal(acl=tuple(collection.acl_tokens()))
    before: dict[str, float] = {}
    after: dict[str, float] = {}
    seconds = 0.0
    for n, (qid, text) in enumerate(sorted(ds.queries.items()), start=1):
        hits = searcher.search(text, principal, k=depth, with_ranks=False, rerank=False)
        gold = set(ds.qrels[qid])
        before[qid] = reciprocal_rank([h.chunk_id for h in hits], gold)
        start = time.perf_counter()
        reranked = model.rerank(text, hits)
        seconds += time.perf_counter() - start
        after[qid] = reciprocal_rank([h.chunk_id for h in reranked], gold)
        if on_progress:
            on_progress("rerank gate", n, len(ds.queries))
    c = compare_paired(before, after)
    return RerankGate(len(before), depth, c.mean_a, c.mean_b, c.delta, (c.ci_low, c.ci_high), c.p_value,
                      (c.wins, c.ties, c.losses), round(1000 * seconds / len(before), 1),
                      enable=c.delta > 0 and c.p_value < alpha)
