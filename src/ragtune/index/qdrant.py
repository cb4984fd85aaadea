"""Qdrant through ``qdrant-client``: the scale-out sibling of the embedded Qdrant Edge store.

With ``store.url`` set it talks to a Qdrant server or cluster (sharding, replication, the same
filter / prefetch / fusion query model as Edge); without it, the client's *local mode* keeps the
same API in-process on disk (for tests and small set-ups; no HNSW there: it scans exactly).
Each index version is one Qdrant collection: ``<collection>--<version>`` on a server, ``chunks``
in a local-mode folder.

Differences from the Edge store, and why:
- keyword scoring is BM25 as sparse vectors (:mod:`ragtune.index.sparse`) with the engine's IDF
  modifier, because a scored full-text index is an Edge-only query today;
- the ACL filter is the same single ``MatchAny`` on the ``acl`` keyword list, on every prefetch.

Example:
    >>> import tempfile, numpy as np
    >>> from ragtune.config import StoreConfig
    >>> from ragtune.index.base import Query, StoredChunk
    >>> from ragtune.index.qdrant import QdrantStore
    >>> store = QdrantStore.open(tempfile.mkdtemp(), dim=2, config=StoreConfig(backend="qdrant"))
    >>> store.upsert([StoredChunk("00000000-0000-0000-0000-000000000001", np.array([1.0, 0.0]),
    ...     "cats purr", {"doc_id": "d1", "doc_hash": "h", "acl": ["group:pets"], "text": "cats purr"})])
    >>> len(store.search(Query("bm25", acl_tokens=["public"], text="cats")))  # not visible
    0
    >>> [h.payload["doc_id"] for h in store.search(Query("hybrid", acl_tokens=["group:pets"], text="cats", vector=np.array([1.0, 0.0])))]
    ['d1']
    >>> store.close()
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ragtune.config import StoreConfig
from ragtune.errors import InputError
from ragtune.index.base import Query, StoredChunk, StoreHit
from ragtune.index.fusion import add_dense_scores, add_ranks
from ragtune.index.lock import OwnerLock
from ragtune.index.sparse import Bm25Encoder
from ragtune.types import HIT_FIELDS

DENSE, SPARSE = "dense", "bm25"
_KEYWORD_FIELDS = ("acl", "doc_id", "doc_hash")
_PAYLOAD_FIELDS = list(HIT_FIELDS)  # what a search returns with each hit


class QdrantStore:
    def __init__(self, client, name: str, config: StoreConfig, lock: OwnerLock | None):
        self.client = client
        self.name = name
        self.config = config
        self._lock = lock
        self._bm25 = Bm25Encoder(avg_len=config.bm25_avg_len)

    @classmethod
    def open(cls, path: str | Path, dim: int, config: StoreConfig, name: str | None = None) -> "QdrantStore":
        """A server collection ``name`` when ``config.url`` is set, else local mode at ``path``."""
        from qdrant_client import QdrantClient

        lock = None
        if config.url:
            client = QdrantClient(url=config.url, api_key=config.api_key or os.environ.get("QDRANT_API_KEY"))
            name = name or Path(path).name
        else:
            path = Path(path)
            lock = OwnerLock(path.parent, f"{path.name}.lock")  # local mode: one process, like Edge
            lock.acquire()
            try:
                client = QdrantClient(path=str(path))
            except BaseException:
                lock.release()
                raise
            name = "chunks"
        store = cls(client, name, config, lock)
        try:
            store._ensure_collection(dim)
        except BaseException:
            store.close()
            raise
        return store

    def _ensure_collection(self, dim: int) -> None:
        from qdrant_client import models

        if self.client.collection_exists(self.name):
            size = self.client.get_collection(self.name).config.params.vectors[DENSE].size
            if size != dim:
                raise InputError(f"Qdrant collection {self.name!r} holds {size}-d vectors but the embedder makes {dim}-d ones")
            return
        self.client.create_collection(
            self.name,
            vectors_config={DENSE: models.VectorParams(size=dim, distance=models.Distance.COSINE)},
            sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
            hnsw_config=models.HnswConfigDiff(m=self.config.hnsw_m, ef_construct=self.config.hnsw_ef_construct,
                                              full_scan_threshold=self.config.full_scan_threshold_kb),
        )
        if self.config.url:  # local mode has no payload indexes (it scans)
            for field in _KEYWORD_FIELDS:
                self.client.create_payload_index(self.name, field, models.PayloadSchemaType.KEYWORD)

    # -- writes ---------------------------------------------------------------------------------
    def upsert(self, chunks: list[StoredChunk]) -> None:
        from qdrant_client import models

        if not chunks:
            return
        points = []
        for c in chunks:
            sparse = self._bm25.document(c.search_text)
            points.append(models.PointStruct(
                id=c.point_id, payload={**c.payload, "search_text": c.search_text},
                vector={DENSE: np.asarray(c.vector, dtype=np.float32).tolist(),
                        SPARSE: models.SparseVector(indices=sparse.indices, values=sparse.values)}))
        self.client.upsert(self.name, points, wait=True)

    def delete_document(self, doc_id: str, keep_hash: str | None = None) -> None:
        from qdrant_client import models

        must_not = [_match("doc_hash", keep_hash)] if keep_hash else None
        self.client.delete(self.name, models.FilterSelector(filter=models.Filter(must=[_match("doc_id", doc_id)],
                                                                                 must_not=must_not)), wait=True)

    def set_document_payload(self, doc_id: str, payload: dict[str, Any]) -> None:
        from qdrant_client import models

        self.client.set_payload(self.name, payload, points=models.Filter(must=[_match("doc_id", doc_id)]), wait=True)

    def flush(self) -> None:
        pass  # every write waits for the engine (wait=True)

    def optimize(self) -> None:
        pass  # the server's optimizers run on their own; local mode has nothing to optimise

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    def drop(self) -> None:
        """Delete this version's Qdrant collection (a server keeps it after the folder is gone)."""
        self.client.delete_collection(self.name)

    # -- reads ----------------------------------------------------------------------------------
    def search(self, query: Query) -> list[StoreHit]:
        from qdrant_client import models

        flt = self._filter(query)
        # Local mode scans exactly and warns on search params; a server uses them.
        params = models.SearchParams(hnsw_ef=query.hnsw_ef) if self.config.url else None
        if query.mode in ("dense", "bm25"):
            q = self._dense(query) if query.mode == "dense" else self._sparse(query)
            res = self.client.query_points(self.name, query=q, using=query.mode if query.mode == "dense" else SPARSE,
                                           query_filter=flt, search_params=params, limit=query.k,
                                           with_payload=_PAYLOAD_FIELDS)
            return _hits(res.points, query.mode)
        depth = max(query.candidates, query.k)
        if query.fused_here:
            # Qdrant's weighted RRF divides positions by the weight, flattening a heavy list at
            # k = 60, and orders equal fused scores arbitrarily (see EdgeStore._fused_here); its
            # DBSF takes no weights: fuse here (Σ w / (k + rank), or Σ w · normalised score), ties
            # broken by point id.
            from ragtune.index.fusion import fuse

            dense, bm25 = self.client.query_batch_points(self.name, [
                models.QueryRequest(query=self._dense(query), using=DENSE, filter=flt, params=params, limit=depth,
                                    with_payload=_PAYLOAD_FIELDS),
                models.QueryRequest(query=self._sparse(query), using=SPARSE, filter=flt, limit=depth,
                                    with_payload=_PAYLOAD_FIELDS, with_vector=[DENSE] if query.dense_scores else False)])
            hits = fuse({"dense": _hits(dense.points, "dense"), "bm25": _hits(bm25.points, "bm25")}, query.k, query.fusion,
                        query.rrf_k, {"dense": query.weights[0], "bm25": query.weights[1]})
            if query.dense_scores:
                add_dense_scores([h for h in hits if "dense" not in h.scores], _vectors(bm25.points), query.vector)
            return hits
        prefetch = [models.Prefetch(query=self._dense(query), using=DENSE, filter=flt, params=params, limit=depth),
                    models.Prefetch(query=self._sparse(query), using=SPARSE, filter=flt, limit=depth)]
        fusion = models.FusionQuery(fusion=models.Fusion.DBSF)  # fused here above: only unweighted DBSF is left to the engine
        fused = models.QueryRequest(prefetch=prefetch, query=fusion, filter=flt, limit=query.k, with_payload=_PAYLOAD_FIELDS,
                                    with_vector=[DENSE] if query.dense_scores else False)
        if not query.with_ranks:
            points = self.client.query_batch_points(self.name, [fused])[0].points
            hits = _hits(points, "hybrid")
            if query.dense_scores:
                add_dense_scores(hits, _vectors(points), query.vector)
            return hits
        dense, bm25, hybrid = self.client.query_batch_points(self.name, [
            models.QueryRequest(query=self._dense(query), using=DENSE, filter=flt, params=params, limit=depth),
            models.QueryRequest(query=self._sparse(query), using=SPARSE, filter=flt, limit=depth),
            fused])
        hits = _hits(hybrid.points, "hybrid")
        if query.dense_scores:
            add_dense_scores(hits, _vectors(hybrid.points), query.vector)
        add_ranks(hits, "dense", dense.points)
        add_ranks(hits, "bm25", bm25.points)
        return hits

    def count(self, acl_tokens: list[str] | None = None, doc_id: str | None = None) -> int:
        from qdrant_client import models

        must = ([_match_any("acl", acl_tokens)] if acl_tokens is not None else []) + \
               ([_match("doc_id", doc_id)] if doc_id is not None else [])
        return self.client.count(self.name, count_filter=models.Filter(must=must) if must else None, exact=True).count

    def scroll_payloads(self, fields: list[str]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        offset = None
        while True:
            records, offset = self.client.scroll(self.name, limit=1000, offset=offset, with_payload=fields)
            out += [{"point_id": str(r.id), **(r.payload or {})} for r in records]
            if offset is None:
                return out

    def vectors(self, point_ids: list[str]) -> np.ndarray:
        by_id = {}
        for start in range(0, len(point_ids), 1000):
            for r in self.client.retrieve(self.name, point_ids[start:start + 1000], with_payload=False, with_vectors=[DENSE]):
                by_id[str(r.id)] = r.vector[DENSE]
        return np.array([by_id[i] for i in point_ids], dtype=np.float32)

    # -- helpers --------------------------------------------------------------------------------
    def _filter(self, query: Query):
        from qdrant_client import models

        must = [_match_any("acl", query.acl_tokens)]
        for key, value in query.metadata.items():
            must.append(_match_any(f"meta.{key}", value) if isinstance(value, (list, tuple)) else _match(f"meta.{key}", value))
        return models.Filter(must=must)

    @staticmethod
    def _dense(query: Query) -> list[float]:
        if query.vector is None:
            raise ValueError(f"{query.mode} search needs a query vector")
        return np.asarray(query.vector, dtype=np.float32).tolist()

    def _sparse(self, query: Query):
        from qdrant_client import models

        if not query.text:
            raise ValueError(f"{query.mode} search needs query text")
        vec = self._bm25.query(query.text)
        return models.SparseVector(indices=vec.indices, values=vec.values)


def _vectors(points) -> dict[str, Any]:
    return {str(p.id): p.vector[DENSE] if isinstance(p.vector, dict) else p.vector for p in points if p.vector}


def _hits(points, name: str) -> list[StoreHit]:
    return [StoreHit(str(p.id), float(p.score), p.payload or {}, {name: i}, {name: float(p.score)})
            for i, p in enumerate(points, start=1)]


def _match(key: str, value: Any):
    from qdrant_client import models

    return models.FieldCondition(key=key, match=models.MatchValue(value=value))


def _match_any(key: str, values: list[Any] | tuple[Any, ...]):
    from qdrant_client import models

    return models.FieldCondition(key=key, match=models.MatchAny(any=list(values)))
