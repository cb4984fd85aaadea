"""The Store protocol: what retrieval and ingestion need from an index, and nothing more.

A backend keeps chunks with a dense vector, a BM25-scored text field and a payload, and answers
dense, keyword and fused queries with the access filter *inside* the query (so a chunk a
principal may not see is never returned, counted or fused). Adding a backend (Qdrant server,
pgvector) means implementing this protocol; callers do not change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from ragtune.errors import BusyError, InputError

Mode = Literal["dense", "bm25", "hybrid"]


@dataclass
class StoredChunk:
    """One chunk as written to a store."""

    point_id: str
    vector: np.ndarray
    search_text: str  # what BM25 scores (chunk text, optionally prefixed by title/headings)
    payload: dict[str, Any]  # must hold doc_id, doc_hash, acl (tokens), text


@dataclass
class Query:
    """A store query. ``acl_tokens`` is mandatory: there is no unfiltered search path."""

    mode: Mode
    acl_tokens: list[str]
    k: int = 10
    vector: np.ndarray | None = None
    text: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)  # equality / any-of filters on doc metadata
    fusion: Literal["rrf", "dbsf"] = "rrf"
    rrf_k: int = 60
    weights: tuple[float, float] = (1.0, 1.0)  # (dense, bm25): each list's share under RRF and DBSF
    candidates: int = 100
    hnsw_ef: int | None = None  # HNSW beam width; None = the engine's default
    with_ranks: bool = False  # hybrid DBSF: also report each retriever's rank of every hit (two more queries; RRF hits always carry them)
    # hybrid: every hit also carries its dense (cosine) score, from its vector returned by the same
    # query (what abstention reads), so no extra query is made for it.
    dense_scores: bool = False

    def __post_init__(self) -> None:
        for key, value in self.metadata.items():
            check_filter_value(key, value)

    @property
    def fused_here(self) -> bool:
        """Hybrid fusion that ragtune computes itself rather than the Qdrant engine: RRF (the
        engine's weighting flattens a heavy list and breaks ties arbitrarily) and weighted DBSF
        (the engine's takes no weights)."""
        return self.fusion == "rrf" or tuple(self.weights) != (1.0, 1.0)


def check_filter_value(key: Any, value: Any) -> None:
    """A metadata filter is ``{key: value}`` or ``{key: [any of these values]}``, values being
    strings, integers or booleans: what every backend can match exactly (a float, an object or
    null has no exact match in all of them, and an empty list would match nothing).

    >>> check_filter_value("team", ["a", "b"])
    >>> check_filter_value("team", [])
    Traceback (most recent call last):
    ragtune.errors.InputError: metadata filter 'team': an empty list matches nothing; give at least one value
    """
    if not isinstance(key, str) or not key:
        raise InputError(f"metadata filter key {key!r}: use a non-empty string")
    values = value if isinstance(value, (list, tuple)) else [value]
    if not values:
        raise InputError(f"metadata filter {key!r}: an empty list matches nothing; give at least one value")
    for v in values:
        if not isinstance(v, (str, int)) or isinstance(v, float):
            raise InputError(f"metadata filter {key!r}: {v!r} is not a string, integer or boolean")


@dataclass
class StoreHit:
    point_id: str
    score: float
    payload: dict[str, Any]
    ranks: dict[str, int] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)  # per retriever: cosine (dense), BM25


class StoreBusyError(BusyError):
    """The store is owned by another live process; the message names it."""


class Store(Protocol):
    def upsert(self, chunks: list[StoredChunk]) -> None: ...

    def delete_document(self, doc_id: str, keep_hash: str | None = None) -> None:
        """Delete a document's chunks; with ``keep_hash``, only those of other versions."""

    def set_document_payload(self, doc_id: str, payload: dict[str, Any]) -> None: ...

    def search(self, query: Query) -> list[StoreHit]: ...

    def count(self, acl_tokens: list[str] | None = None, doc_id: str | None = None) -> int:
        """Chunks visible to ``acl_tokens`` (None = all: admin/maintenance use only)."""

    def scroll_payloads(self, fields: list[str]) -> list[dict[str, Any]]: ...

    def vectors(self, point_ids: list[str]) -> np.ndarray:
        """Stored dense vectors, in the order of ``point_ids``."""
        ...

    def flush(self) -> None: ...

    def optimize(self) -> None: ...

    def close(self) -> None: ...

    def drop(self) -> None:
        """Delete the data this store keeps outside its version folder (a server collection, a
        table); a store whose data is the folder itself has nothing to drop."""
        ...
