"""Pick the store backend a pipeline names."""

from __future__ import annotations

from pathlib import Path

from ragtune.config import StoreConfig
from ragtune.index.base import Store


def open_store(config: StoreConfig, path: str | Path, dim: int) -> Store:
    if config.backend == "qdrant-edge":
        from ragtune.index.edge import QdrantEdgeStore

        return QdrantEdgeStore.open(path, dim=dim, config=config)
    raise ValueError(f"unknown store backend {config.backend!r}")
