"""The index end-to-end training retrieves from, kept in step with the query encoder.

Training the shared (symmetric) encoder moves the passage vectors too; the RAG-end2end recipe
keeps them fixed within a refresh period and re-encodes the whole corpus between periods, so
retrieval never drifts far from what the encoder would do now. Here that index is a new,
private *index version* of the collection (a copy of the live one, same point ids and payloads):
the live index keeps serving while training runs, each refresh rewrites the version's vectors in
place, and when training ends the version is left ``ready`` with the trained encoder recorded as
its embedder, i.e. a shadow to compare and promote like any other (`ragtune models compare /
promote`).

With a frozen retriever (generator-only training) nothing is copied: the live version is read.

Example:
    >>> from ragtune.train.rag.index import TrainingIndex
    >>> index = TrainingIndex.copy_of_live(collection)  # doctest: +SKIP
    >>> ids = index.search(query_vector, k=4)  # doctest: +SKIP
    >>> index.refresh(encoder.encode_document)  # doctest: +SKIP
"""

from __future__ import annotations

import shutil
from typing import Callable

import numpy as np

from ragtune.collection import Collection
from ragtune.collection.shadow import POINT_FIELDS, handle, write_points
from ragtune.collection.versions import VersionRecord
from ragtune.index.base import Query


class TrainingIndex:
    def __init__(self, collection: Collection, store, points: list[dict], version: str | None):
        self.collection = collection
        self.store = store
        self.points = points
        self.version = version  # None: the live version, read-only
        self.by_id = {p["point_id"]: p for p in points}
        self.tokens = sorted({t for p in points for t in p.get("acl", [])})  # an offline job sees every chunk
        self.refreshes = 0

    @classmethod
    def live(cls, collection: Collection) -> "TrainingIndex":
        """The live version as it is (the retriever does not train)."""
        return cls(collection, collection.store, collection.store.scroll_payloads(POINT_FIELDS), None)

    @classmethod
    def copy_of_live(cls, collection: Collection, batch: int = 512) -> "TrainingIndex":
        """A new version holding a copy of the live one's chunks and vectors."""
        from ragtune.index import open_store

        versions = collection.index_versions
        versions.ensure_live_recorded(collection.pipeline.embedder.model)
        live = versions.live
        with handle(collection, live) as source:
            points = source.store.scroll_payloads(POINT_FIELDS)
            vectors = source.store.vectors([p["point_id"] for p in points])
            dim = source.embedder.dim
        # Recorded first: an interrupted run is visible, not orphaned.
        version = versions.create(VersionRecord(embedder=versions.get(live).embedder, origin="train rag", source=live,
                                                chunks=len(points), state="training"))
        store = open_store(collection.pipeline.store, collection.dir / "index" / version, dim=dim)
        by_id = dict(zip((p["point_id"] for p in points), vectors))
        write_points(store, points, lambda part: np.stack([by_id[p["point_id"]] for p in part]), batch)
        return cls(collection, store, points, version)

    def search(self, vector: np.ndarray, k: int) -> list[str]:
        """Point ids of the top ``k`` chunks by dense score (exact ranking of what is stored)."""
        hits = self.store.search(Query(mode="dense", acl_tokens=self.tokens, k=k, vector=vector, with_ranks=False))
        return [h.point_id for h in hits]

    def vectors(self, point_ids: list[str]) -> np.ndarray:
        return self.store.vectors(point_ids)

    def text(self, point_id: str) -> str:
        return self.by_id[point_id].get("text", "")

    def refresh(self, encode: Callable[[list[str]], np.ndarray], batch: int = 256,
                on_progress: Callable[[str, int, int], None] | None = None) -> None:
        """Re-encode every chunk with ``encode`` and rewrite the stored vectors in place."""
        if self.version is None:
            raise ValueError("the live index is read-only during training; re-indexing needs a copy (copy_of_live)")
        write_points(self.store, self.points, lambda part: encode([p["search_text"] for p in part]), batch, on_progress)
        self.refreshes += 1

    def finish(self, embedder_model: str, info: dict | None = None) -> str | None:
        """Close the store and leave the version ready, embedded by ``embedder_model``."""
        if self.version is None:
            return None
        self.store.optimize()
        self.store.close()
        self.collection.index_versions.mark_ready(self.version, embedder=embedder_model, refreshes=self.refreshes,
                                                  **(info or {}))
        return self.version

    def discard(self) -> None:
        """Drop a copy that will not be used (training failed or was a dry run)."""
        if self.version is None:
            return
        self.store.drop()  # data that lives outside the folder (a server collection, a table)
        self.store.close()
        shutil.rmtree(self.collection.dir / "index" / self.version, ignore_errors=True)
        self.collection.index_versions.remove(self.version)
