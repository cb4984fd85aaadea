"""The rerank stage: a cross-encoder rescoring the top ``depth`` fused candidates.

ragtune trains its own cross-encoder (no pretrained reranker is available offline); any
sentence-transformers ``CrossEncoder`` folder or hub id plugs in here through
``pipeline.reranker.model``.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

from ragtune.config import RerankerConfig
from ragtune.errors import InputError
from ragtune.index.fusion import rrf_scores
from ragtune.types import Hit, search_text

T = TypeVar("T")


class Reranker(Protocol):
    def rerank(self, query: str, hits: list[Hit]) -> list[Hit]: ...


def blend(fused_order: list[T], rerank_order: list[T], first_stage_weight: float) -> list[T]:
    """The final order: the reranker's alone (weight 0), or reciprocal-rank fusion of the
    reranker's order (weight 1) with the first stage's (``first_stage_weight``). A reranker trained
    on a few thousand pairs knows things the first stage does not, and the reverse: on SciFact
    the self-trained one alone ranked below hybrid fusion, so the gate may keep both voices.

    >>> blend(["a", "b", "c"], ["c", "b", "a"], 0.0)
    ['c', 'b', 'a']
    >>> blend(["a", "b", "c"], ["c", "a", "b"], 2.0)
    ['a', 'c', 'b']
    """
    if first_stage_weight <= 0:
        return list(rerank_order)
    scores = rrf_scores({"rerank": rerank_order, "fused": fused_order}, weights={"fused": first_stage_weight})
    # Ties (equal fused score) keep the reranker's order.
    position = {c: i for i, c in enumerate(rerank_order)}
    return sorted(rerank_order, key=lambda c: (-scores[c], position[c]))


class CrossEncoderReranker:
    def __init__(self, config: RerankerConfig, device: str | None = None):
        from ragtune.models.loading import best_device, cross_encoder, native_bf16

        if not config.model:
            raise InputError("reranker.model is not set")
        self.config = config
        self.device = best_device(device)
        self.model = cross_encoder(config.model, self.device, config.max_length)
        # bf16 autocast where the hardware computes it natively: the forward pass is the cost of
        # the rerank stage (50 pairs per question by default).
        self.bf16 = config.precision == "bf16" or (config.precision == "auto" and native_bf16(self.device))

    def scores(self, query: str, hits: list[Hit]) -> list[float]:
        """The cross-encoder's score of each hit for ``query``, in the order given."""
        import torch

        if not hits:
            return []
        # The text the chunk was embedded as (title > headings, then the chunk): what the synthetic
        # training pairs hold, so the reranker is served the inputs it was trained on.
        pairs = [(query, search_text(h.text, h.title, h.heading_path)) for h in hits]
        device_type = "cuda" if str(self.device).startswith("cuda") else "cpu"
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=self.bf16):
            out = self.model.predict(pairs, batch_size=self.config.batch_size, show_progress_bar=False,
                                     convert_to_numpy=True)
        return [float(s) for s in out]

    def rerank(self, query: str, hits: list[Hit], first_stage_weight: float | None = None) -> list[Hit]:
        """``hits`` (in fused order) in the final order; ``first_stage_weight`` overrides the
        pipeline's ``reranker.first_stage_weight`` (the gate tries several)."""
        return order_by(hits, self.scores(query, hits),
                        self.config.first_stage_weight if first_stage_weight is None else first_stage_weight)


def order_by(hits: list[Hit], scores: list[float], first_stage_weight: float) -> list[Hit]:
    """``hits`` (fused order) reordered by reranker ``scores``, blended with the fused order."""
    for rank, (hit, score) in enumerate(zip(hits, scores), start=1):
        hit.ranks.setdefault("fused", rank)
        hit.score = float(score)
    # Positions, not chunk ids, name the candidates: nothing is lost if a list repeats a chunk.
    reranked = sorted(range(len(hits)), key=lambda i: hits[i].score, reverse=True)
    out = [hits[i] for i in blend(list(range(len(hits))), reranked, first_stage_weight)]
    for rank, hit in enumerate(out, start=1):
        hit.ranks["rerank"] = rank
    return out
