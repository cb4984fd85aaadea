"""Search a collection as a principal: dense, bm25 or hybrid, then an optional rerank stage.

Every query carries the principal's ACL tokens into the store query itself; there is no code
path that searches without them.

Example:
    >>> import pathlib, tempfile
    >>> from ragtune.collection import Collection
    >>> from ragtune.ingest.sync import ingest
    >>> from ragtune.retrieve import Searcher
    >>> from ragtune.types import Acl, Principal
    >>> src = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (src / "cats.txt").write_text("Cats sleep for most of the day.")
    >>> _ = (src / "pay.txt").write_text("Salaries are paid on the 25th of each month.")
    >>> with Collection.create(tempfile.mkdtemp(), "kb") as c:
    ...     _ = ingest(c, src / "cats.txt", Acl(public=True))
    ...     _ = ingest(c, src / "pay.txt", Acl(groups=("hr",)))
    ...     s = Searcher(c)
    ...     anyone = [h.doc_id for h in s.search("when are salaries paid?", Principal("eve"))]
    ...     hr = [h.doc_id for h in s.search("when are salaries paid?", Principal("ana", ("hr",)), k=1)]
    >>> anyone, hr
    (['cats.txt'], ['pay.txt'])
"""

from __future__ import annotations

from typing import Any

from ragtune.collection import Collection
from ragtune.config import QueryConfig
from ragtune.errors import InputError
from ragtune.index.base import Query, StoreHit
from ragtune.tracing import stage
from ragtune.types import Hit, Principal


class Searcher:
    def __init__(self, collection: Collection, reranker=None):
        self.collection = collection
        self.config: QueryConfig = collection.pipeline.query
        if reranker is None and collection.pipeline.reranker.model:
            from ragtune.retrieve.rerank import CrossEncoderReranker

            reranker = CrossEncoderReranker(collection.pipeline.reranker, collection.pipeline.embedder.device)
        self.reranker = reranker

    def search(
        self,
        text: str,
        principal: Principal,
        mode: str | None = None,
        k: int | None = None,
        metadata: dict[str, Any] | None = None,
        with_ranks: bool = False,
        rerank: bool = True,
        dense_scores: bool = False,
    ) -> list[Hit]:
        """``rerank=False``: the fused list only, even where a rerank stage is configured (what
        the rerank gate compares against). ``with_ranks``: hybrid hits also carry each
        retriever's own rank and score (``--explain``); it costs the store two more queries per
        search, so it is off unless asked for. ``dense_scores``: hybrid hits also carry their
        cosine with the query (what abstention reads), from vectors the same query returns."""
        if not text or not text.strip():
            raise InputError("empty query")
        cfg = self.config
        mode = mode or cfg.mode
        k = k or cfg.k
        reranker = self.reranker if rerank else None
        depth = max(k, self.collection.pipeline.reranker.depth) if reranker else k
        vector = None
        if mode in ("dense", "hybrid"):
            with stage("embed", texts=1):
                vector = self.collection.embedder.embed_query(text)
        query = Query(
            mode=mode,  # type: ignore[arg-type]
            acl_tokens=principal.tokens(),
            k=depth,
            vector=vector,
            text=text if mode in ("bm25", "hybrid") else None,
            metadata=metadata or {},
            fusion=cfg.fusion,
            rrf_k=cfg.rrf_k,
            weights=(cfg.dense_weight, cfg.bm25_weight),
            candidates=cfg.candidates,
            hnsw_ef=cfg.hybrid_hnsw_ef if mode == "hybrid" else cfg.hnsw_ef,
            with_ranks=with_ranks,
            dense_scores=dense_scores,
        )
        with stage("store.query", mode=mode, k=depth):
            hits = [_to_hit(h) for h in self.collection.store.search(query)]
        if reranker:
            # Only the top `depth` are rescored; a deeper k (e.g. Recall@100) keeps the fused
            # order below them instead of paying a cross-encoder call per extra hit.
            cut = self.collection.pipeline.reranker.depth
            with stage("rerank", pairs=len(hits[:cut])):
                hits = reranker.rerank(text, hits[:cut]) + hits[cut:]
        return hits[:k]


def _to_hit(h: StoreHit) -> Hit:
    return Hit.from_payload(h.payload, h.score, h.point_id, h.ranks, h.scores)
