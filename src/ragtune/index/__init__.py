"""Vector + keyword stores behind one small protocol; Qdrant Edge (embedded) is the default."""

from ragtune.index.base import Query, Store, StoreBusyError, StoredChunk, StoreHit
from ragtune.index.factory import open_store

__all__ = ["Query", "Store", "StoreBusyError", "StoreHit", "StoredChunk", "open_store"]
