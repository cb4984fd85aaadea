"""Index versions: build a shadow index with a new embedder beside the live one, promote it,
roll back.

A shadow copies every chunk of the live version (same point ids, same payloads, same BM25
text) and re-embeds it with the new model, so the two differ only in their vectors and can be
compared query by query. Promotion rewrites one small file (``index/live``, atomically); the
old version stays on disk, so a rollback is the same one-file switch back. Each switch is
appended to ``index/history.jsonl``.

Example:
    >>> from ragtune.index.versions import build_shadow, promote, rollback
    >>> v2 = build_shadow(collection, "models/embedder/handbook/v2")  # doctest: +SKIP
    >>> promote(collection, v2, reason="nDCG@10 +0.04, p=0.003")  # doctest: +SKIP
    >>> rollback(collection)  # back to v1  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from ragtune.collection import Collection
from ragtune.errors import NotFoundError, StateError
from ragtune.index.base import StoredChunk

PAYLOAD_FIELDS = ["chunk_id", "doc_id", "doc_hash", "text", "title", "start", "end", "headings", "parent_text",
                  "acl", "source", "meta", "search_text"]


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n" if not isinstance(data, str) else data)
    os.replace(tmp, path)


def set_versions(collection: Collection, versions: dict) -> None:
    _write_json_atomic(collection.dir / "index" / "versions.json", versions)


def next_version(collection: Collection) -> str:
    used = {p.name for p in (collection.dir / "index").iterdir() if p.is_dir()} | set(collection.versions())
    n = 1
    while f"v{n}" in used:
        n += 1
    return f"v{n}"


def ensure_live_recorded(collection: Collection) -> None:
    """Record the live version's embedder (collections made before versioning have no entry)."""
    versions = collection.versions()
    if collection.live_version not in versions:
        versions[collection.live_version] = {"embedder": collection.pipeline.embedder.model,
                                             "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "origin": "ingest"}
        set_versions(collection, versions)


def build_shadow(collection: Collection, embedder_model: str, info: dict | None = None, batch: int = 512,
                 on_progress: Callable[[str, int, int], None] | None = None, share_vectors: bool = False) -> str:
    """Copy the live index into a new version embedded with ``embedder_model``; returns its name.

    ``share_vectors``: the new model embeds documents exactly as the live one (a query-side
    adapter), so the version is recorded over the live version's vectors instead of a copy."""
    from ragtune.models.embedder import Embedder

    ensure_live_recorded(collection)
    version = next_version(collection)
    if share_vectors:
        live = collection.live_version
        versions = collection.versions()
        versions[version] = {"embedder": embedder_model, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                             "origin": "shadow", "from": live, "index": versions[live].get("index", live),
                             "state": "ready", **(info or {})}
        set_versions(collection, versions)
        return version
    with handle(collection, collection.live_version) as live:
        points = live.store.scroll_payloads(PAYLOAD_FIELDS)
        embedder = Embedder(collection.pipeline.embedder.model_copy(update={"model": embedder_model}))
        versions = collection.versions()
        versions[version] = {"embedder": embedder_model, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                             "origin": "shadow", "from": collection.live_version, "chunks": len(points),
                             "state": "building", **(info or {})}
    set_versions(collection, versions)  # recorded first: a crashed build is visible, not orphaned
    from ragtune.index import open_store

    store = open_store(collection.pipeline.store, collection.dir / "index" / version, dim=embedder.dim)
    try:
        write_points(store, points, lambda part: embedder.embed_documents([p["search_text"] for p in part]), batch,
                     on_progress)
        store.optimize()
    finally:
        store.close()
    versions = collection.versions()
    versions[version]["state"] = "ready"
    set_versions(collection, versions)
    return version


def write_points(store, points: list[dict], vectors_for: Callable[[list[dict]], Any], batch: int = 512,
                 on_progress: Callable[[str, int, int], None] | None = None) -> None:
    """(Re-)write ``points`` (payloads as scrolled with PAYLOAD_FIELDS) with the vectors
    ``vectors_for(batch of points)`` gives; same point ids, so a re-write replaces vectors in place."""
    for start in range(0, len(points), batch):
        part = points[start:start + batch]
        vectors = vectors_for(part)
        store.upsert([StoredChunk(p["point_id"], v, p["search_text"],
                                  {k: p[k] for k in PAYLOAD_FIELDS if k in p and k != "search_text"})
                      for p, v in zip(part, vectors)])
        if on_progress:
            on_progress("re-embedding", min(start + batch, len(points)), len(points))
    store.flush()


@contextmanager
def handle(collection: Collection, version: str) -> Iterator[Collection]:
    """``collection`` itself when it is bound to ``version`` (its store may be open: a second
    handle would wait on the store's lock), else a temporary handle on that version."""
    if collection.version == version:
        yield collection
        return
    other = collection.at_version(version)
    try:
        yield other
    finally:
        other.close()


def promote(collection: Collection, version: str, reason: str = "") -> None:
    """Make ``version`` live. Refuses a version that is not ready or no longer matches the live
    index (documents ingested since the shadow was built)."""
    ensure_live_recorded(collection)
    versions = collection.versions()
    if version not in versions:
        raise NotFoundError(f"collection {collection.name!r} has no index version {version!r}; it has {sorted(versions)}")
    if versions[version].get("state", "ready") != "ready":
        raise StateError(f"index version {version} is not ready (state {versions[version]['state']}); build a new shadow")
    if version == collection.live_version:
        return
    _check_same_chunks(collection, version)
    _switch(collection, version, "promote", reason)


def rollback(collection: Collection, reason: str = "") -> str:
    """Make the version that was live before the last (not yet undone) promotion live again."""
    stack: list[str] = []  # versions that promotions replaced; each rollback undoes the newest
    for entry in _history(collection):
        if entry["action"] == "promote":
            stack.append(entry["from"])
        elif entry["action"] == "rollback" and stack:
            stack.pop()
    if not stack:
        raise StateError(f"nothing to roll back to: no promotion of {collection.name!r} is left to undo")
    _switch(collection, stack[-1], "rollback", reason)
    return stack[-1]


def _check_same_chunks(collection: Collection, version: str) -> None:
    with handle(collection, collection.live_version) as live:
        a = {p["point_id"] for p in live.store.scroll_payloads(["doc_id"])}
    with handle(collection, version) as other:
        b = {p["point_id"] for p in other.store.scroll_payloads(["doc_id"])}
    if a != b:
        raise StateError(f"index version {version} no longer matches the live index ({len(a - b)} chunks missing, "
                         f"{len(b - a)} extra): documents changed since it was built; build a new shadow")


def _switch(collection: Collection, version: str, action: str, reason: str) -> None:
    previous = collection.live_version
    with (collection.dir / "index" / "history.jsonl").open("a") as f:
        f.write(json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "action": action, "from": previous,
                            "to": version, "reason": reason}) + "\n")
    collection.close()  # the handle was bound to the old version's store
    _write_json_atomic(collection.dir / "index" / "live", version + "\n")
    # Keep pipeline.yaml telling the truth about the model queries are now embedded with.
    model = collection.versions()[version]["embedder"]
    collection.pipeline.embedder.model = model
    collection.pipeline.save(collection.dir / "pipeline.yaml")
    collection.__dict__.pop("embedder", None)


def _history(collection: Collection) -> list[dict]:
    path = collection.dir / "index" / "history.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def history(collection: Collection) -> list[dict]:
    return _history(collection)
