"""A collection's sources: connectors it keeps in sync, each with its options, default ACL,
schedule, cursor and status.

A source's documents belong to the root ``source:<name>`` in the manifest, so a sync deletes only
what that source no longer has, and removing a source removes exactly its documents.

Example:
    >>> import pathlib, tempfile
    >>> from ragtune.collection import Collection
    >>> from ragtune.types import Acl
    >>> docs = pathlib.Path(tempfile.mkdtemp()); _ = (docs / "a.md").write_text("# A\\n\\nApples are red.")
    >>> with Collection.create(tempfile.mkdtemp(), "fruit") as c:
    ...     _ = add_source(c, "notes", "folder", {"path": str(docs)}, Acl(public=True))
    ...     first, again = sync_source(c, "notes"), sync_source(c, "notes")
    >>> (first.indexed, again.unchanged, again.indexed)
    (1, 1, 0)
"""

from __future__ import annotations

import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragtune.collection import Collection
from ragtune.errors import AlreadyExistsError, InputError, NotFoundError, RagtuneError
from ragtune.ingest.connectors import connector_class
from ragtune.ingest.connectors.base import Scan
from ragtune.ingest.sync import IngestReport, Progress, load_options, sync_scan
from ragtune.types import Acl

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass
class Source:
    name: str
    type: str
    options: dict[str, Any]
    acl: Acl
    every_s: float | None
    state: dict[str, Any]
    status: dict[str, Any]

    @property
    def root(self) -> str:
        return f"source:{self.name}"

    def due(self, now: float) -> bool:
        """Scheduled, and its interval has passed since its last attempt (or it never ran)."""
        if not self.every_s:
            return False
        last = self.status.get("last_attempt")
        return last is None or now - last >= self.every_s

    def describe(self, now: float | None = None) -> dict[str, Any]:
        """What the API, CLI and UI show: the options, ACL and schedule, and how its syncs went."""
        now = time.time() if now is None else now
        last = self.status.get("last_sync")
        return {"name": self.name, "type": self.type, "options": self.options, "acl": self.acl.to_dict(),
                "every_s": self.every_s, **self.status, "lag_s": None if last is None else round(now - last, 1)}


def _source(row: dict[str, Any]) -> Source:
    return Source(row["name"], row["type"], row["options"], Acl.from_dict(row["acl"]), row["every_s"], row["state"],
                  row["status"])


def workdir(collection: Collection, name: str) -> Path:
    return collection.dir / "sources" / name


def connector(collection: Collection, source: Source):
    conn = connector_class(source.type).from_options(source.name, source.options, workdir(collection, source.name))
    if hasattr(conn, "load_options"):  # a connector that reads files through ragtune's loaders
        conn.load_options = load_options(collection.pipeline.ingest)
    return conn


def add_source(collection: Collection, name: str, kind: str, options: dict[str, Any], acl: Acl,
               every_s: float | None = None) -> Source:
    """Register a source (checked by building its connector: errors name the option); nothing is
    read until :func:`sync_source`."""
    if not _NAME.match(name):
        raise InputError(f"source name {name!r}: use letters, digits, '.', '_' or '-' (at most 64, starting with a letter or digit)")
    if collection.manifest.source(name) is not None:
        raise AlreadyExistsError(f"source {name!r} already exists in {collection.name!r}; remove it first or pick another name")
    if every_s is not None and every_s <= 0:
        raise InputError(f"source {name!r}: the sync interval must be positive, not {every_s}")
    conn = connector_class(kind).from_options(name, options, workdir(collection, name))
    if acl.is_empty and not _mirrors_permissions(conn):
        raise InputError(f"source {name!r}: nobody could see its documents: give an ACL (public, users or groups)"
                         + (" or permissions: true" if kind == "folder" else ""))
    with collection.manifest.batch():
        collection.manifest.add_source(name, kind, options, acl.to_dict(), every_s)
    return get_source(collection, name)


_KEEP: Any = object()  # update_source: leave this setting as it is


def update_source(collection: Collection, name: str, options: dict[str, Any] | None = None, acl: Acl | None = None,
                  every_s: Any = _KEEP) -> Source:
    """Change a source's options (merged; a ``None`` value removes an option), default ACL or
    schedule (``None``: no schedule). Checked like :func:`add_source`; the next sync lists
    everything again (re-embedding only what changed), so a new ACL reaches every document."""
    source = get_source(collection, name)
    merged = {k: v for k, v in {**source.options, **(options or {})}.items() if v is not None}
    acl = source.acl if acl is None else acl
    every = source.every_s if every_s is _KEEP else every_s
    if every is not None and every <= 0:
        raise InputError(f"source {name!r}: the sync interval must be positive, not {every}")
    conn = connector_class(source.type).from_options(name, merged, workdir(collection, name))
    if acl.is_empty and not _mirrors_permissions(conn):
        raise InputError(f"source {name!r}: nobody could see its documents: give an ACL (public, users or groups)")
    with collection.manifest.batch():
        collection.manifest.update_source(name, merged, acl.to_dict(), every)
    return get_source(collection, name)


def _mirrors_permissions(conn) -> bool:
    return bool(getattr(conn, "permissions", False)) or conn.type == "mailbox"


def get_source(collection: Collection, name: str) -> Source:
    row = collection.manifest.source(name)
    if row is None:
        known = [s["name"] for s in collection.manifest.sources()]
        raise NotFoundError(f"no source {name!r} in {collection.name!r}" + (f"; it has {', '.join(known)}" if known else
                                                                             "; add one with `ragtune sources add`"))
    return _source(row)


def list_sources(collection: Collection) -> list[Source]:
    return [_source(row) for row in collection.manifest.sources()]


def sync_source(collection: Collection, name: str, on_progress: Progress | None = None) -> IngestReport:
    """Read what changed at the source and apply it. Its new cursor is stored only once its
    documents are indexed; a failing source records the error in its status and raises it."""
    source = get_source(collection, name)
    started = time.time()
    status = dict(source.status, last_attempt=started)
    try:
        scan = connector(collection, source).scan(source.state)
        report = sync_scan(collection, source.root, scan, source.acl, on_progress, record_acls=False)
    except RagtuneError as e:
        status.update(last_error=str(e), last_error_at=time.time())
        with collection.manifest.batch():
            collection.manifest.save_source(name, status)
        raise
    status.update(last_sync=started, last_error=None, seconds=round(report.seconds, 3), complete=scan.complete,
                  seen=report.seen, changed=report.indexed + report.updated + report.relabelled,
                  deleted=report.deleted, failed=report.failed, failures=[list(f) for f in report.failures[:20]],
                  syncs=int(source.status.get("syncs", 0)) + 1)
    with collection.manifest.batch():
        collection.manifest.save_source(name, status, scan.state)
    return report


def remove_source(collection: Collection, name: str) -> IngestReport:
    """Delete the source's documents from the index, then the source itself."""
    source = get_source(collection, name)
    report = sync_scan(collection, source.root, Scan(iter(()), complete=True), source.acl)
    with collection.manifest.batch():
        collection.manifest.remove_source(name)
    shutil.rmtree(workdir(collection, name), ignore_errors=True)
    return report


def due_sources(collection: Collection, now: float | None = None) -> list[Source]:
    now = time.time() if now is None else now
    return [s for s in list_sources(collection) if s.due(now)]
