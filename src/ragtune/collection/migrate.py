"""Copy a collection to another store backend with nothing lost: every chunk's id, payload, BM25
text and vector, plus the manifest (so incremental ingest continues where it was), verified by
counts and checksums before the copy is declared done.

The source is not touched; the copy is a new collection bound to the same pipeline except its
``store`` section. Backends are named like URLs:

- ``qdrant-edge``: the embedded default;
- ``qdrant`` (qdrant-client local mode) or ``qdrant+http://host:6333`` (a server);
- ``pgvector`` (the embedded PostgreSQL) or ``postgresql://user@host:5432/db``.

Example:
    >>> from ragtune.collection.migrate import store_config_for
    >>> store_config_for("postgresql://rag@db:5432/rag").backend
    'pgvector'
    >>> store_config_for("qdrant+https://qdrant.internal:6333").url
    'https://qdrant.internal:6333'
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ragtune.collection.collection import Collection
from ragtune.collection.shadow import POINT_FIELDS, write_points
from ragtune.collection.versions import VersionRecord
from ragtune.config import StoreConfig
from ragtune.errors import InputError


def store_config_for(target: str, base: StoreConfig | None = None) -> StoreConfig:
    """The ``store`` settings for a backend URL, keeping ``base``'s engine-independent knobs."""
    base = base or StoreConfig()
    keep = base.model_dump(exclude={"backend", "url"})
    if target in ("qdrant-edge", "qdrant", "pgvector"):
        return StoreConfig(**keep, backend=target, url=None)
    if target.startswith("qdrant+"):
        return StoreConfig(**keep, backend="qdrant", url=target.removeprefix("qdrant+"))
    if target.startswith(("postgresql://", "postgres://")):
        return StoreConfig(**keep, backend="pgvector", url=target)
    raise InputError(f"unknown backend {target!r}: use qdrant-edge, qdrant, qdrant+http(s)://HOST:PORT, pgvector "
                     "or postgresql://USER@HOST:PORT/DB")


@dataclass
class MigrationReport:
    source: str
    target: str
    backend: str
    chunks: int
    payload_checksum: str  # over (id, payload, BM25 text) of every chunk, both sides equal
    max_vector_difference: float  # engines may renormalise cosine vectors in the last bits
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def migrate(source: Collection, target: StoreConfig, home: str | Path | None, name: str, batch: int = 512,
            on_progress: Callable[[str, int, int], None] | None = None) -> MigrationReport:
    """Copy ``source``'s live index version and manifest into a new collection ``name``."""
    start = time.perf_counter()
    pipeline = source.pipeline.model_copy(deep=True)
    pipeline.store = target
    points = source.store.scroll_payloads(POINT_FIELDS)
    vectors = dict(zip((p["point_id"] for p in points), source.store.vectors([p["point_id"] for p in points])))
    copy = Collection.create(home, name, pipeline)
    try:
        copy.index_versions.replace_all({copy.live_version: VersionRecord(
            embedder=source.embedder.config.model, origin="migrate", source=f"{source.name}/{source.version}")})
        _copy_manifest(source, copy)
        write_points(copy.store, points, lambda part: np.stack([vectors[p["point_id"]] for p in part]), batch,
                     on_progress)
        copy.store.optimize()
        report = _verify(source, copy, points, vectors)
    except BaseException:
        copy.close()
        Collection.delete(home, name)  # a half copy is worse than none
        raise
    copy.close()
    report.seconds = round(time.perf_counter() - start, 1)
    return report


def _copy_manifest(source: Collection, copy: Collection) -> None:
    copy.close()  # the copy's manifest is replaced wholesale
    src = sqlite3.connect(source.dir / "manifest.sqlite")
    dst = sqlite3.connect(copy.dir / "manifest.sqlite")
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


def _verify(source: Collection, copy: Collection, points: list[dict], vectors: dict) -> MigrationReport:
    copied = copy.store.scroll_payloads(POINT_FIELDS)
    a, b = checksum(points), checksum(copied)
    if len(copied) != len(points) or a != b:
        raise RuntimeError(f"migration check failed: {len(points)} chunks / checksum {a[:12]} in {source.name}, "
                           f"{len(copied)} / {b[:12]} in {copy.name}; the copy was removed")
    ids = [p["point_id"] for p in points]
    diff = float(np.abs(copy.store.vectors(ids) - np.stack([vectors[i] for i in ids])).max()) if ids else 0.0
    if diff > 1e-5:
        raise RuntimeError(f"migration check failed: vectors differ by up to {diff:.2e}; the copy was removed")
    if source.manifest.stats() != copy.manifest.stats():
        raise RuntimeError("migration check failed: the manifests differ; the copy was removed")
    return MigrationReport(source.name, copy.name, copy.pipeline.store.backend, len(points), a, diff, 0.0)


def checksum(points: list[dict]) -> str:
    """SHA-256 over every chunk's id, payload and BM25 text, in id order (engine independent)."""
    h = hashlib.sha256()
    for p in sorted(points, key=lambda p: p["point_id"]):
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()
