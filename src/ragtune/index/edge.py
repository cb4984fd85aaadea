"""Embedded default store: Qdrant Edge, the Qdrant engine in-process (HNSW, payload indexes,
BM25-scored text index, prefetch + fusion in one query).

Example:
    >>> import tempfile, numpy as np
    >>> from ragtune.config import StoreConfig
    >>> from ragtune.index.base import Query, StoredChunk
    >>> from ragtune.index.edge import QdrantEdgeStore
    >>> store = QdrantEdgeStore.open(tempfile.mkdtemp(), dim=2, config=StoreConfig())
    >>> store.upsert([StoredChunk("00000000-0000-0000-0000-000000000001", np.array([1.0, 0.0]),
    ...     "cats purr", {"doc_id": "d1", "doc_hash": "h", "acl": ["group:pets"], "text": "cats purr"})])
    >>> len(store.search(Query("bm25", acl_tokens=["public"], text="cats")))  # not visible
    0
    >>> [h.payload["doc_id"] for h in store.search(Query("bm25", acl_tokens=["group:pets"], text="cats"))]
    ['d1']
    >>> store.close()

Facts checked on qdrant-edge-py 0.9.0 that shaped this file:
- a ``Bool`` payload match never matched, so ACLs are one keyword list (``acl``) and one
  ``MatchAny`` condition;
- an empty ``MatchAny`` matches nothing, so an empty principal sees nothing but public chunks;
- a second ``EdgeShard.load`` of an open store fails on the WAL lock: see :mod:`.lock`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import numpy as np
import qdrant_edge as qe

from ragtune.config import StoreConfig
from ragtune.index.base import Query, StoredChunk, StoreHit
from ragtune.index.fusion import add_dense_scores, add_ranks
from ragtune.index.lock import OwnerLock
from ragtune.types import HIT_FIELDS

DENSE = "dense"
TEXT_FIELD = "search_text"
_KEYWORD_FIELDS = ("acl", "doc_id", "doc_hash")


class QdrantEdgeStore:
    def __init__(self, shard: "qe.EdgeShard", lock: OwnerLock, config: StoreConfig):
        self._shard = shard
        self._lock = lock
        self.config = config

    @classmethod
    def open(cls, path: str | Path, dim: int, config: StoreConfig) -> "QdrantEdgeStore":
        """Open the store at ``path``, creating it (with its payload indexes) if missing."""
        path = Path(path)
        lock = OwnerLock(path.parent, f"{path.name}.lock")
        lock.acquire()
        try:
            if (path / "segments").exists() or (path / "wal").exists():
                shard = qe.EdgeShard.load(str(path))
                _check_dim(shard, dim, path)
            else:
                shard = qe.EdgeShard.create(str(path), _edge_config(dim, config))
                for name in _KEYWORD_FIELDS:
                    shard.update(qe.UpdateOperation.create_field_index(name, qe.PayloadSchemaType.Keyword))
                shard.update(qe.UpdateOperation.create_field_index(TEXT_FIELD, _text_index(config)))
                shard.flush()
        except BaseException:
            lock.release()
            raise
        return cls(shard, lock, config)

    # -- writes ---------------------------------------------------------------------------------
    def upsert(self, chunks: list[StoredChunk]) -> None:
        if not chunks:
            return
        points = [
            qe.Point(c.point_id, {DENSE: c.vector.tolist()}, {**c.payload, TEXT_FIELD: c.search_text})
            for c in chunks
        ]
        self._shard.update(qe.UpdateOperation.upsert_points(points))

    def delete_document(self, doc_id: str, keep_hash: str | None = None) -> None:
        must_not: list[Any] | None = [_match("doc_hash", keep_hash)] if keep_hash else None
        self._shard.update(
            qe.UpdateOperation.delete_points_by_filter(qe.Filter(must=[_match("doc_id", doc_id)], must_not=must_not))
        )

    def set_document_payload(self, doc_id: str, payload: dict[str, Any]) -> None:
        self._shard.update(
            qe.UpdateOperation.set_payload_by_filter(qe.Filter(must=[_match("doc_id", doc_id)]), payload)
        )

    def flush(self) -> None:
        self._shard.flush()

    def optimize(self) -> None:
        self._shard.optimize()

    def drop(self) -> None:
        """Nothing outside the version folder: deleting the folder deletes the data."""

    def close(self) -> None:
        try:
            self._shard.flush()
            self._shard.close()
        finally:
            self._lock.release()

    # -- reads ----------------------------------------------------------------------------------
    def search(self, query: Query) -> list[StoreHit]:
        flt = self._filter(query)
        params = qe.SearchParams(hnsw_ef=query.hnsw_ef)
        payload = _PAYLOAD_FIELDS
        if query.mode == "dense":
            req = qe.QueryRequest(limit=query.k, query=self._dense(query), filter=flt, params=params, with_payload=payload)
            return _hits(self._shard.query(req), "dense")
        if query.mode == "bm25":
            req = qe.QueryRequest(limit=query.k, query=self._bm25(query), filter=flt, with_payload=payload)
            return _hits(self._shard.query(req), "bm25")
        depth = max(query.candidates, query.k)
        if query.fused_here:
            return self._fused_here(query, flt, params, depth)
        # The filter goes on every prefetch: fusion only ever sees chunks the principal may see.
        prefetches = [
            qe.Prefetch(limit=depth, query=self._dense(query), filter=flt, params=params),
            qe.Prefetch(limit=depth, query=self._bm25(query), filter=flt),
        ]
        fusion: Any = qe.Fusion.Dbsf()  # fused here above: only unweighted DBSF is left to the engine
        vectors = [DENSE] if query.dense_scores else None
        fused = qe.QueryRequest(limit=query.k, prefetches=prefetches, query=fusion, filter=flt, with_payload=payload,
                                with_vector=vectors)
        if not query.with_ranks:
            points = self._shard.query(fused)
            hits = _hits(points, "hybrid")
            if query.dense_scores:
                add_dense_scores(hits, _vectors(points), query.vector)
            return hits
        ranked = [
            qe.QueryRequest(limit=depth, query=self._dense(query), filter=flt, params=params, with_payload=False),
            qe.QueryRequest(limit=depth, query=self._bm25(query), filter=flt, with_payload=False),
            fused,
        ]
        dense, bm25, hybrid = self._shard.query_batch(qe.QueryBatchRequest(ranked))
        hits = _hits(hybrid, "hybrid")
        if query.dense_scores:
            add_dense_scores(hits, _vectors(hybrid), query.vector)
        add_ranks(hits, "dense", dense)
        add_ranks(hits, "bm25", bm25)
        return hits

    def _fused_here(self, query: Query, flt, params, depth: int) -> list[StoreHit]:
        """RRF, and weighted DBSF (the engine's takes no weights), fused here on the two filtered
        lists. RRF here (``Σ w / (k + rank)``, as Elasticsearch and pgvector) for two reasons.
        Qdrant divides the *position* by the weight, ``1 / ((rank + 1) / w + k - 1)``, which at
        ragtune's k = 60 flattens a heavily weighted list instead of favouring it (measured:
        weights 100:1 for dense ranked like BM25 alone). And Qdrant orders equal fused scores
        arbitrarily, so the same query in two processes gave a different top 10 for 40 of 150
        COVID-QA questions (±0.003 nDCG@10 with nothing changed); ``fuse`` breaks ties by point id.
        Both lists are still filtered inside the engine."""
        from ragtune.index.fusion import fuse

        vectors = [DENSE] if query.dense_scores else None  # BM25-only hits have no dense score otherwise
        dense, bm25 = self._shard.query_batch(qe.QueryBatchRequest([
            qe.QueryRequest(limit=depth, query=self._dense(query), filter=flt, params=params, with_payload=_PAYLOAD_FIELDS),
            qe.QueryRequest(limit=depth, query=self._bm25(query), filter=flt, with_payload=_PAYLOAD_FIELDS,
                            with_vector=vectors)]))
        hits = fuse({"dense": _hits(dense, "dense"), "bm25": _hits(bm25, "bm25")}, query.k, query.fusion, query.rrf_k,
                    {"dense": query.weights[0], "bm25": query.weights[1]})
        if query.dense_scores:
            add_dense_scores([h for h in hits if "dense" not in h.scores], _vectors(bm25), query.vector)
        return hits

    def count(self, acl_tokens: list[str] | None = None, doc_id: str | None = None) -> int:
        must: list[Any] = []
        if acl_tokens is not None:
            must.append(_match_any("acl", acl_tokens))
        if doc_id is not None:
            must.append(_match("doc_id", doc_id))
        return self._shard.count(qe.CountRequest(exact=True, filter=qe.Filter(must=must) if must else None))

    def scroll_payloads(self, fields: list[str]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        offset = None
        while True:
            records, offset = self._shard.scroll(qe.ScrollRequest(offset=offset, limit=1000, with_payload=fields))
            out += [{"point_id": str(r.id), **(r.payload or {})} for r in records]
            if offset is None:
                return out

    def vectors(self, point_ids: list[str]) -> np.ndarray:
        """Stored vectors, in the order of ``point_ids`` (retrieve does not keep that order)."""
        by_id = {}
        ids: list[Any] = list(point_ids)
        for start in range(0, len(ids), 1000):
            for r in self._shard.retrieve(ids[start:start + 1000], with_payload=False, with_vector=True):
                by_id[str(r.id)] = cast(dict, r.vector)[DENSE]  # named vectors: a dict by name
        return np.array([by_id[i] for i in point_ids], dtype=np.float32)

    # -- helpers --------------------------------------------------------------------------------
    def _filter(self, query: Query) -> "qe.Filter":
        must: list[Any] = [_match_any("acl", query.acl_tokens)]
        for key, value in query.metadata.items():
            field = f"meta.{key}"
            must.append(_match_any(field, value) if isinstance(value, (list, tuple)) else _match(field, value))
        return qe.Filter(must=must)

    @staticmethod
    def _dense(query: Query) -> "qe.Query":
        if query.vector is None:
            raise ValueError(f"{query.mode} search needs a query vector")
        return qe.Query.Nearest(np.asarray(query.vector, dtype=np.float32).tolist(), using=DENSE)

    @staticmethod
    def _bm25(query: Query) -> "qe.TextQuery":
        if not query.text:
            raise ValueError(f"{query.mode} search needs query text")
        return qe.TextQuery(TEXT_FIELD, query.text)


_PAYLOAD_FIELDS = list(HIT_FIELDS)  # what a search returns with each hit


def _vectors(points) -> dict[str, Any]:
    return {str(p.id): cast(dict, p.vector)[DENSE] for p in points if p.vector}


def _hits(points, name: str) -> list[StoreHit]:
    return [StoreHit(str(p.id), float(p.score), p.payload or {}, {name: i}, {name: float(p.score)})
            for i, p in enumerate(points, start=1)]


def _match(key: str, value: Any) -> "qe.FieldCondition":
    return qe.FieldCondition(key=key, match=qe.MatchValue(value=value))


def _match_any(key: str, values: list[Any] | tuple[Any, ...]) -> "qe.FieldCondition":
    return qe.FieldCondition(key=key, match=qe.MatchAny(any=list(values)))


def _edge_config(dim: int, config: StoreConfig) -> "qe.EdgeConfig":
    return qe.EdgeConfig(
        vectors={DENSE: qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine)},
        hnsw_config=qe.HnswIndexConfig(
            m=config.hnsw_m,
            ef_construct=config.hnsw_ef_construct,
            full_scan_threshold=config.full_scan_threshold_kb,
        ),
        optimizers=qe.EdgeOptimizersConfig(indexing_threshold=config.indexing_threshold_kb)
        if config.indexing_threshold_kb is not None
        else None,
    )


def _text_index(config: StoreConfig) -> "qe.TextIndexParams":
    stemmer = qe.SnowballParams(getattr(qe.SnowballLanguage, config.stemmer.capitalize())) if config.stemmer else None
    stopwords = qe.StopwordsSet(languages={getattr(qe.Language, config.stopwords.capitalize())}) if config.stopwords else None
    return qe.TextIndexParams(
        tokenizer=qe.TokenizerType.Word,
        lowercase=True,
        ascii_folding=True,
        stemmer=stemmer,
        stopwords=stopwords,
        scoring=True,
        enable_hnsw=False,
    )


def _check_dim(shard: "qe.EdgeShard", dim: int, path: Path) -> None:
    # Fails loudly if a collection is reopened with an embedder of another size.
    records, _ = shard.scroll(qe.ScrollRequest(limit=1, with_vector=True))
    stored = cast(dict, records[0].vector)[DENSE] if records and records[0].vector else None
    if stored is not None and len(stored) != dim:
        raise ValueError(
            f"store {path} holds {len(stored)}-d vectors but the embedder makes {dim}-d ones; "
            "use the collection's own embedder, or build a new index version for the new model"
        )
