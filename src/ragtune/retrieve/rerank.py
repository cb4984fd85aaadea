"""The rerank stage: a cross-encoder rescoring the top ``depth`` fused candidates.

ragtune trains its own cross-encoder (no pretrained reranker is available offline); any
sentence-transformers ``CrossEncoder`` folder or hub id plugs in here through
``pipeline.reranker.model``.
"""

from __future__ import annotations

from typing import Protocol

from ragtune.config import RerankerConfig
from ragtune.errors import InputError
from ragtune.types import Hit, search_text


class Reranker(Protocol):
    def rerank(self, query: str, hits: list[Hit]) -> list[Hit]: ...


class CrossEncoderReranker:
    def __init__(self, config: RerankerConfig, device: str | None = None):
        from ragtune.models.loading import cross_encoder

        if not config.model:
            raise InputError("reranker.model is not set")
        self.config = config
        self.model = cross_encoder(config.model, device, config.max_length)

    def rerank(self, query: str, hits: list[Hit]) -> list[Hit]:
        if not hits:
            return hits
        # The text the chunk was embedded as (title > headings, then the chunk): what the synthetic
        # training pairs hold, so the reranker is served the inputs it was trained on.
        scores = self.model.predict([(query, search_text(h.text, h.title, h.heading_path)) for h in hits],
                                    batch_size=self.config.batch_size, show_progress_bar=False)
        for rank, (hit, score) in enumerate(zip(hits, scores), start=1):
            hit.ranks.setdefault("fused", rank)
            hit.score = float(score)
        out = sorted(hits, key=lambda h: h.score, reverse=True)
        for rank, hit in enumerate(out, start=1):
            hit.ranks["rerank"] = rank
        return out
