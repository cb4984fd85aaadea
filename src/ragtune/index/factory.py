"""Pick the store backend a pipeline names.

Every index version has a folder ``collections/<name>/index/<version>/``: the data itself for
the embedded engines (Qdrant Edge, qdrant-client local mode), and for engines elsewhere (a Qdrant
server, PostgreSQL) a ``store.json`` naming where the data lives (collection / table), so the
on-disk layout, versioning and promotion work the same for every backend.
"""

from __future__ import annotations

import json
from pathlib import Path

from ragtune.config import StoreConfig, redact_url
from ragtune.errors import InputError
from ragtune.index.base import Store

BACKENDS = ("qdrant-edge", "qdrant", "pgvector")


def open_store(config: StoreConfig, path: str | Path, dim: int) -> Store:
    path = Path(path)
    if config.backend == "qdrant-edge":
        from ragtune.index.edge import QdrantEdgeStore

        return QdrantEdgeStore.open(path, dim=dim, config=config)
    if config.backend == "qdrant":
        from ragtune.index.qdrant import QdrantStore

        if not config.url:
            return QdrantStore.open(path, dim=dim, config=config)
        name = _recorded(path).get("collection") or (
            f"{_collection_of(path)}--{path.name}--{_digest(str(_home_of(path).resolve()))}")  # homes may share a server
        _record(path, {"backend": "qdrant", "url": redact_url(config.url), "collection": name})
        return QdrantStore.open(path, dim=dim, config=config, name=name)
    if config.backend == "pgvector":
        from ragtune.index.pgvector import PgVectorStore, table_name

        # A version keeps the table it was created with (store.json), names from before included.
        table = _recorded(path).get("table") or table_name(_collection_of(path), path.name, str(_home_of(path).resolve()))
        _record(path, {"backend": "pgvector", "url": redact_url(config.url) if config.url else "embedded",
                       "table": table})
        return PgVectorStore.open(path, dim=dim, config=config, table=table, pgdata=_home_of(path) / "postgres")
    raise InputError(f"unknown store backend {config.backend!r}; use one of {', '.join(BACKENDS)}")


def drop_store(config: StoreConfig, path: str | Path, dim: int) -> None:
    """Delete a version's data where it lives outside its folder (a server collection, a table)."""
    if config.backend == "qdrant-edge" or (config.backend == "qdrant" and not config.url):
        return  # the data is the folder itself
    store = open_store(config, path, dim)
    try:
        store.drop()
    finally:
        store.close()


def _collection_of(path: Path) -> str:
    # collections/<name>/index/<version>; a bare folder (tests, tools) names itself.
    return path.parent.parent.name if path.parent.name == "index" else path.parent.name


def _home_of(path: Path) -> Path:
    return path.parents[3] if path.parent.name == "index" and len(path.parents) > 3 else path.parent


def _digest(text: str) -> str:
    import hashlib

    return hashlib.sha1(text.encode()).hexdigest()[:8]


def _recorded(path: Path) -> dict:
    target = path / "store.json"
    return json.loads(target.read_text()) if target.exists() else {}


def _record(path: Path, info: dict) -> None:
    path.mkdir(parents=True, exist_ok=True)
    target = path / "store.json"
    if not target.exists():
        target.write_text(json.dumps(info, indent=2) + "\n")
