"""Shadow index versions: build one with a new embedder beside the live one, promote it, roll back.

A shadow copies every chunk of the live version (same point ids, same payloads, same BM25
text) and re-embeds it with the new model, so the two differ only in their vectors and can be
compared query by query. Promotion rewrites one small file (``index/live``, atomically); the
old version stays on disk, so a rollback is the same one-file switch back. Each switch is
appended to ``index/history.jsonl`` (see ``versions.py``).

Example:
    >>> from ragtune.collection.shadow import build_shadow, promote, rollback
    >>> v2 = build_shadow(collection, "models/embedder/handbook/v2")  # doctest: +SKIP
    >>> promote(collection, v2, reason="nDCG@10 +0.04, p=0.003")  # doctest: +SKIP
    >>> rollback(collection)  # back to v1  # doctest: +SKIP
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from ragtune.collection.collection import Collection
from ragtune.collection.versions import BUILDING, READY, VersionRecord
from ragtune.errors import StateError
from ragtune.index.base import Store, StoredChunk
from ragtune.types import PAYLOAD_FIELDS, Scope

# What a copy of a version needs from each point: its payload and the BM25 text (a separate column).
POINT_FIELDS: list[str] = [*PAYLOAD_FIELDS, "search_text"]


def build_shadow(collection: Collection, embedder_model: str, info: dict | None = None, batch: int = 512,
                 on_progress: Callable[[str, int, int], None] | None = None, share_vectors: bool = False) -> str:
    """Copy the live index into a new version embedded with ``embedder_model``; returns its name.

    ``share_vectors``: the new model embeds documents exactly as the live one (a query-side
    adapter), so the version is recorded over the live version's vectors instead of a copy."""
    from ragtune.index import open_store
    from ragtune.models.embedder import Embedder

    versions = collection.index_versions
    versions.ensure_live_recorded(collection.pipeline.embedder.model)
    live = versions.live
    if share_vectors:
        return versions.create(VersionRecord(embedder=embedder_model, origin="shadow", source=live,
                                             index=versions.get(live).index or live, state=READY,
                                             info=dict(info or {})))
    with handle(collection, live) as source:
        points = source.store.scroll_payloads(POINT_FIELDS)
    embedder = Embedder(collection.pipeline.embedder.model_copy(update={"model": embedder_model}),
                        cache=collection.encoder_cache)
    version = versions.create(VersionRecord(embedder=embedder_model, origin="shadow", source=live, chunks=len(points),
                                            state=BUILDING, info=dict(info or {})))
    store = open_store(collection.pipeline.store, collection.dir / "index" / version, dim=embedder.dim)
    try:
        write_points(store, points, lambda part: embedder.embed_documents([p["search_text"] for p in part]), batch,
                     on_progress)
        store.optimize()
    finally:
        store.close()
    versions.mark_ready(version)
    return version


def write_points(store: Store, points: list[dict], vectors_for: Callable[[list[dict]], Any], batch: int = 512,
                 on_progress: Callable[[str, int, int], None] | None = None) -> None:
    """(Re-)write ``points`` (as scrolled with ``POINT_FIELDS``) with the vectors
    ``vectors_for(batch of points)`` gives; same point ids, so a re-write replaces vectors in place."""
    for start in range(0, len(points), batch):
        part = points[start:start + batch]
        vectors = vectors_for(part)
        store.upsert([StoredChunk(p["point_id"], v, p["search_text"], {k: p[k] for k in PAYLOAD_FIELDS if k in p})
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
    """Make ``version`` live. Refuses a version that is not ready; what changed in the live index
    since the version was built is replayed into it first."""
    versions = collection.index_versions
    versions.ensure_live_recorded(collection.pipeline.embedder.model)
    record = versions.get(version)
    if record.state != READY:
        raise StateError(f"index version {version} is not ready (state {record.state}); build a new shadow")
    if version == versions.live:
        return
    scope = trained_scope(record.embedder)
    if scope is not None and not collection.readable_by_all_readers(scope):
        raise StateError(f"index version {version}: its embedder was trained on text (scope {scope.to_list()}) not "
                         f"every reader of {collection.name!r} may read; it stays a shadow (train on text they all "
                         "may read: `ragtune adapt` without --scope)")
    replay_live(collection, version)
    collection.close()  # the handle was bound to the old version's store
    versions.promote(version, reason)
    _follow_live(collection)


def trained_scope(embedder_model: str) -> Scope | None:
    """Whose text a registry embedder was trained on (its ``meta.json``); None for a model that
    recorded none (shipped, from the hub, or trained on the whole collection before scopes)."""
    meta = Path(embedder_model) / "meta.json"
    if not meta.is_file():
        return None
    return Scope.from_list(json.loads(meta.read_text()).get("scope"))


def rollback(collection: Collection, reason: str = "") -> str:
    """Make the version that was live before the last (not yet undone) promotion live again,
    after replaying into it what changed since (see :func:`replay_live`)."""
    target = collection.index_versions.rollback_target()
    replay_live(collection, target)
    collection.close()
    previous = collection.index_versions.rollback(reason)
    _follow_live(collection)
    return previous


def replay_live(collection: Collection, version: str) -> dict[str, int]:
    """Make ``version``'s chunks those of the live index before it goes live: documents deleted
    since it was built are deleted, relabelled ones (an ACL narrowed from public to hr) take the
    live payload, new or changed ones are embedded with ``version``'s document model. Without
    this a rollback brought deleted documents and wider ACLs back. Returns what it changed."""
    versions = collection.index_versions
    record = versions.get(version)
    with handle(collection, collection.live_version) as live, handle(collection, version) as other:
        if other.index_dir == live.index_dir:
            return {"deleted": 0, "relabelled": 0, "embedded": 0}  # one store: nothing can differ
        by_doc = _points_by_doc(live.store.scroll_payloads(POINT_FIELDS))
        theirs = _points_by_doc(other.store.scroll_payloads(POINT_FIELDS))
        changed = {"deleted": 0, "relabelled": 0, "embedded": 0}
        for doc_id in theirs.keys() - by_doc.keys():
            other.store.delete_document(doc_id)
            changed["deleted"] += 1
        stale = [d for d, pts in by_doc.items() if theirs.get(d) != pts]
        if stale:
            from ragtune.models.embedder import Embedder

            owner = versions.get(record.index) if record.index else record
            embedder = Embedder(collection.pipeline.embedder.model_copy(update={"model": owner.embedder}),
                                cache=collection.encoder_cache)
            for doc_id in stale:
                old = {p["point_id"]: p for p in theirs.get(doc_id, {}).values()}
                new = list(by_doc[doc_id].values())
                same_text = [p for p in new if p["point_id"] in old and old[p["point_id"]]["search_text"] == p["search_text"]]
                kept = dict(zip((p["point_id"] for p in same_text),
                                other.store.vectors([p["point_id"] for p in same_text]))) if same_text else {}
                fresh = [p for p in new if p["point_id"] not in kept]
                vectors = dict(zip((p["point_id"] for p in fresh),
                                   embedder.embed_documents([p["search_text"] for p in fresh]))) if fresh else {}
                other.store.delete_document(doc_id)
                write_points(other.store, new, lambda part: [kept.get(p["point_id"], vectors.get(p["point_id"]))
                                                             for p in part])
                changed["embedded" if fresh else "relabelled"] += 1
        other.store.flush()
        other.store.optimize()
    return changed


def _points_by_doc(points: list[dict]) -> dict[str, dict[str, dict]]:
    out: dict[str, dict[str, dict]] = {}
    for p in points:
        out.setdefault(p["doc_id"], {})[p["point_id"]] = p
    return out


def history(collection: Collection) -> list[dict]:
    return collection.index_versions.history()


def _follow_live(collection: Collection) -> None:
    # Keep pipeline.yaml telling the truth about the model queries are now embedded with.
    collection.pipeline.embedder.model = collection.index_versions.get(collection.live_version).embedder
    collection.save_pipeline()
    collection.reload()
