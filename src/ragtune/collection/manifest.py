"""The manifest: what a collection holds, per document, and how each ingest run went.

It is the ledger that makes ingestion incremental and crash-safe. A document is written to the
manifest as ``pending`` (with its new hash) *before* its chunks go to the store, and marked
``indexed`` only after the store has flushed them. A run that dies in between leaves the
document ``pending``, so the next run redoes it; chunk ids are deterministic, so redoing it
overwrites rather than duplicates, and chunks of any other version are deleted.
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    doc_id     TEXT PRIMARY KEY,
    source     TEXT NOT NULL,
    root       TEXT NOT NULL,
    title      TEXT NOT NULL,
    hash       TEXT NOT NULL,
    meta_hash  TEXT NOT NULL,
    mtime      REAL NOT NULL,
    acl        TEXT NOT NULL,
    state      TEXT NOT NULL CHECK (state IN ('pending', 'indexed')),
    chunks     INTEGER NOT NULL DEFAULT 0,
    indexed_at REAL
);
CREATE INDEX IF NOT EXISTS documents_root ON documents(root);
CREATE TABLE IF NOT EXISTS runs (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    root      TEXT NOT NULL,
    started   REAL NOT NULL,
    finished  REAL,
    seen      INTEGER DEFAULT 0,
    indexed   INTEGER DEFAULT 0,
    updated   INTEGER DEFAULT 0,
    unchanged INTEGER DEFAULT 0,
    deleted   INTEGER DEFAULT 0,
    failed    INTEGER DEFAULT 0,
    chunks    INTEGER DEFAULT 0
);
CREATE TABLE IF NOT EXISTS failures (
    run_id INTEGER NOT NULL,
    source TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sources (
    name    TEXT PRIMARY KEY,
    type    TEXT NOT NULL,
    options TEXT NOT NULL,
    acl     TEXT NOT NULL,
    every_s REAL,
    state   TEXT NOT NULL DEFAULT '{}',
    status  TEXT NOT NULL DEFAULT '{}',
    created REAL NOT NULL
);
"""


@dataclass
class DocRecord:
    doc_id: str
    source: str
    root: str
    title: str
    hash: str
    meta_hash: str
    mtime: float
    acl: dict[str, Any]
    state: str
    chunks: int
    indexed_at: float | None


class Manifest:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves so a batch is one transaction.
        # check_same_thread=False: the server reads stats on request threads while a job thread
        # ingests; it serialises writers per collection itself.
        self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def batch(self) -> Iterator[None]:
        """One transaction: all the writes inside commit together or not at all."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- documents ------------------------------------------------------------------------------
    def get(self, doc_id: str) -> DocRecord | None:
        row = self._db.execute("SELECT * FROM documents WHERE doc_id = ?", (doc_id,)).fetchone()
        return _record(row) if row else None

    def all(self, root: str | None = None) -> Iterator[DocRecord]:
        sql, args = "SELECT * FROM documents", tuple[str, ...]()
        if root is not None:
            sql, args = sql + " WHERE root = ?", (root,)
        for row in self._db.execute(sql + " ORDER BY doc_id", args):
            yield _record(row)

    def mark_pending(self, rec: DocRecord) -> None:
        self._db.execute(
            "INSERT INTO documents (doc_id, source, root, title, hash, meta_hash, mtime, acl, state, chunks) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', 0) "
            "ON CONFLICT(doc_id) DO UPDATE SET source=excluded.source, root=excluded.root, "
            "title=excluded.title, hash=excluded.hash, meta_hash=excluded.meta_hash, "
            "mtime=excluded.mtime, acl=excluded.acl, state='pending'",
            (rec.doc_id, rec.source, rec.root, rec.title, rec.hash, rec.meta_hash, rec.mtime, json.dumps(rec.acl)),
        )

    def mark_indexed(self, doc_id: str, chunks: int) -> None:
        self._db.execute(
            "UPDATE documents SET state='indexed', chunks=?, indexed_at=? WHERE doc_id=?",
            (chunks, time.time(), doc_id),
        )

    def remove(self, doc_id: str) -> None:
        self._db.execute("DELETE FROM documents WHERE doc_id = ?", (doc_id,))

    # -- runs -----------------------------------------------------------------------------------
    def start_run(self, root: str) -> int:
        cur = self._db.execute("INSERT INTO runs (root, started) VALUES (?, ?)", (root, time.time()))
        assert cur.lastrowid is not None
        return cur.lastrowid

    def finish_run(self, run_id: int, stats: dict[str, int], failures: list[tuple[str, str]]) -> None:
        with self.batch():
            cols = ", ".join(f"{k} = ?" for k in stats)
            self._db.execute(f"UPDATE runs SET finished = ?, {cols} WHERE id = ?", (time.time(), *stats.values(), run_id))
            self._db.executemany("INSERT INTO failures VALUES (?, ?, ?)", [(run_id, s, r) for s, r in failures])

    def last_run(self) -> dict[str, Any] | None:
        cur = self._db.execute("SELECT * FROM runs WHERE finished IS NOT NULL ORDER BY id DESC LIMIT 1")
        row = cur.fetchone()
        if row is None:
            return None
        run = dict(zip([d[0] for d in cur.description], row))
        run["failures"] = [
            {"source": s, "reason": r}
            for s, r in self._db.execute("SELECT source, reason FROM failures WHERE run_id = ?", (run["id"],))
        ]
        return run

    # -- sources (connectors kept in sync) --------------------------------------------------------
    # A source's state (its cursor) lives beside the documents it produced: a sync stores it only
    # after its documents are indexed, so a sync killed half-way starts again from the old cursor.
    def add_source(self, name: str, kind: str, options: dict[str, Any], acl: dict[str, Any], every_s: float | None) -> None:
        self._db.execute("INSERT INTO sources (name, type, options, acl, every_s, created) VALUES (?, ?, ?, ?, ?, ?)",
                         (name, kind, json.dumps(options), json.dumps(acl), every_s, time.time()))

    def sources(self) -> list[dict[str, Any]]:
        cur = self._db.execute("SELECT name, type, options, acl, every_s, state, status, created FROM sources ORDER BY name")
        return [_source(row) for row in cur.fetchall()]

    def source(self, name: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT name, type, options, acl, every_s, state, status, created FROM sources "
                               "WHERE name = ?", (name,)).fetchone()
        return _source(row) if row else None

    def save_source(self, name: str, status: dict[str, Any], state: dict[str, Any] | None = None) -> None:
        if state is None:
            self._db.execute("UPDATE sources SET status = ? WHERE name = ?", (json.dumps(status), name))
        else:
            self._db.execute("UPDATE sources SET status = ?, state = ? WHERE name = ?",
                             (json.dumps(status), json.dumps(state), name))

    def update_source(self, name: str, options: dict[str, Any], acl: dict[str, Any], every_s: float | None) -> None:
        # The cursor is dropped: the next sync lists everything again, so a new ACL or option
        # reaches documents the old cursor would have skipped as unchanged.
        self._db.execute("UPDATE sources SET options = ?, acl = ?, every_s = ?, state = '{}' WHERE name = ?",
                         (json.dumps(options), json.dumps(acl), every_s, name))

    def remove_source(self, name: str) -> None:
        self._db.execute("DELETE FROM sources WHERE name = ?", (name,))

    def stats(self) -> dict[str, Any]:
        (docs, chunks, pending, newest) = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(chunks), 0), COALESCE(SUM(state = 'pending'), 0), MAX(indexed_at) "
            "FROM documents"
        ).fetchone()
        return {"documents": docs, "chunks": chunks, "pending": pending, "last_indexed_at": newest}


def _source(row: tuple) -> dict[str, Any]:
    name, kind, options, acl, every_s, state, status, created = row
    return {"name": name, "type": kind, "options": json.loads(options), "acl": json.loads(acl), "every_s": every_s,
            "state": json.loads(state), "status": json.loads(status), "created": created}


def _record(row: tuple) -> DocRecord:
    (doc_id, source, root, title, hash_, meta_hash, mtime, acl, state, chunks, indexed_at) = row
    return DocRecord(doc_id, source, root, title, hash_, meta_hash, mtime, json.loads(acl), state, chunks, indexed_at)
