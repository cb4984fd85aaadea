"""A collection and what it owns: its folder, bound pipeline (``pipeline.yaml``), manifest of
documents (``manifest.py``), index versions (``versions.py``: records, live pointer, history),
shadow builds, promotion and rollback (``shadow.py``) and copies to other backends
(``migrate.py``). ``index/`` holds only the store backends these sit on.
"""

from ragtune.collection.collection import Collection, CollectionNotFoundError

__all__ = ["Collection", "CollectionNotFoundError"]
