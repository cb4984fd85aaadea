"""Incremental, crash-safe ingestion of a file or folder into a collection.

Re-running on the same folder re-embeds only new or changed documents (by content hash),
updates only the payload of documents whose ACL/metadata changed, deletes the chunks of
documents that disappeared, and leaves everything else alone. See :mod:`.manifest` for why a
``kill -9`` at any point loses and duplicates nothing.

Example:
    >>> import pathlib, tempfile
    >>> from ragtune.collection import Collection
    >>> from ragtune.ingest.sync import ingest
    >>> from ragtune.types import Acl
    >>> src = pathlib.Path(tempfile.mkdtemp()); _ = (src / "a.md").write_text("# A\\n\\nApples are red.")
    >>> with Collection.create(tempfile.mkdtemp(), "fruit") as c:
    ...     first, again = ingest(c, src, Acl(public=True)), ingest(c, src, Acl(public=True))
    >>> (first.indexed, first.chunks, again.indexed, again.unchanged)
    (1, 1, 0, 1)
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ragtune.collection import Collection
from ragtune.collection.manifest import DocRecord
from ragtune.errors import StateError
from ragtune.index.base import StoredChunk
from ragtune.ingest.chunking import Chunker
from ragtune.ingest.connectors.base import Failed, Item, Removed, Scan, Skipped, Unchanged
from ragtune.ingest.loaders import LoadOptions, content_hash, meta_hash
from ragtune.types import Acl, Chunk, ChunkPayload, Document, search_text

log = logging.getLogger(__name__)

_POINT_NS = uuid.UUID("6f1c1f6e-3c55-4c44-9d55-6b7a0d1c2a10")

# (event, done, total): "files" as files are read, "chunks" as chunks are embedded and written.
Progress = Callable[[str, int, int], None]


@dataclass
class IngestReport:
    root: str
    seen: int = 0
    indexed: int = 0  # new documents
    updated: int = 0  # changed content (re-chunked, re-embedded)
    relabelled: int = 0  # ACL/metadata changed only (payload rewritten, no re-embedding)
    unchanged: int = 0
    deleted: int = 0
    skipped: int = 0  # files of unsupported types met while walking a folder
    chunks: int = 0  # chunks written this run
    seconds: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return len(self.failures)


def point_id(doc_id: str, doc_hash: str, index: int) -> str:
    """Deterministic: re-writing the same chunk of the same version overwrites, never duplicates."""
    return str(uuid.uuid5(_POINT_NS, f"{doc_id}\0{doc_hash}\0{index}"))


def ingest(collection: Collection, path: str | Path, acl: Acl, on_progress: Progress | None = None,
           record_acls: bool = True) -> IngestReport:
    """Sync ``path`` into ``collection``. ``acl`` applies to every document that does not carry
    its own: JSON/JSONL records may have an ``acl`` field, which counts only with ``record_acls``
    (the server turns it off for uploads unless an admin opts in: a file's content must not
    widen the ACL its uploader chose)."""
    from ragtune.ingest.connectors.folder import FolderConnector

    cfg = collection.pipeline.ingest
    root = Path(path).resolve()
    scan = FolderConnector(root, cfg.include, cfg.exclude, load_options=load_options(cfg)).scan({})
    return sync_scan(collection, str(root), scan, acl, on_progress, record_acls)


def load_options(cfg) -> LoadOptions:
    """The loaders' choices from a pipeline's ``ingest`` settings."""
    return LoadOptions(pdf_tables=cfg.pdf_tables, ocr=cfg.ocr, ocr_languages=cfg.ocr_languages)


def sync_scan(collection: Collection, root: str, scan: Scan, acl: Acl, on_progress: Progress | None = None,
              record_acls: bool = True) -> IngestReport:
    """Apply one connector scan to the live index: documents are (re-)embedded when their content
    changed, relabelled when only their ACL/metadata did, and — for a complete scan — documents of
    ``root`` it did not list are deleted (never those whose read failed this time)."""
    if collection.version != collection.live_version:
        # The manifest is shared by all versions: it must describe the index queries are served from.
        raise StateError(f"ingest writes to the live index ({collection.live_version}), not to version "
                         f"{collection.version}; open the collection without a version")
    started = time.perf_counter()
    report = IngestReport(root=root)
    manifest = collection.manifest
    run_id = manifest.start_run(root)
    batch = _Batch(collection, report, on_progress)
    seen_ids: set[str] = set()
    failed_sources: set[str] = set()
    removed: set[str] = set()
    held = _held_by_source(collection, root)

    def apply(item: Item) -> None:
        if isinstance(item, Document):
            item.content_hash = item.content_hash or content_hash(item)
            _plan(item, acl, root, seen_ids, batch, report, record_acls)
        elif isinstance(item, Unchanged):
            ids = held.get(item.source)
            if ids is None:  # the index does not hold it (new, failed, or pending after a crash)
                for again in item.reload():
                    apply(again)
                return
            seen_ids.update(ids)
            report.seen += len(ids)
            report.unchanged += len(ids)
        elif isinstance(item, Removed):
            removed.add(item.source)
        elif isinstance(item, Failed):
            report.failures.append((item.source, item.reason))
            failed_sources.add(item.source)
        elif isinstance(item, Skipped):
            report.skipped += 1

    read: set[str] = set()  # progress counts sources (a file, a page, a message), not the records in them
    for item in scan.items:
        apply(item)
        if on_progress:
            read.add(item.source if not isinstance(item, Removed) else f"removed:{item.source}")
            on_progress("files", len(read), max(scan.total or 0, len(read)))
    batch.flush()
    if scan.complete:
        _delete_missing(collection, root, seen_ids, failed_sources, report)
    if removed:
        _delete_records(collection, [r for r in manifest.all(root) if r.source in removed and r.doc_id not in seen_ids],
                        report)
    collection.store.optimize()
    report.seconds = time.perf_counter() - started
    stats = {k: getattr(report, k) for k in ("seen", "indexed", "updated", "unchanged", "deleted", "failed", "chunks")}
    manifest.finish_run(run_id, stats, report.failures)
    return report


def _held_by_source(collection: Collection, root: str) -> dict[str, list[str]]:
    """Source → ids of its documents, for sources whose every document is indexed (a pending one
    was cut off by a crash and must be read again)."""
    out: dict[str, list[str]] = {}
    pending: set[str] = set()
    for rec in collection.manifest.all(root):
        out.setdefault(rec.source, []).append(rec.doc_id)
        if rec.state != "indexed":
            pending.add(rec.source)
    return {s: ids for s, ids in out.items() if s not in pending}


def remove_document(collection: Collection, doc_id: str) -> DocRecord:
    """Delete one document's chunks from the live index, then its manifest row (in that order: a
    crash in between leaves a row whose chunks are gone, and the next delete or sync finishes it)."""
    rec = collection.manifest.get(doc_id)
    if rec is None:
        raise KeyError(doc_id)
    collection.store.delete_document(doc_id)
    collection.store.flush()
    with collection.manifest.batch():
        collection.manifest.remove(doc_id)
    return rec


def _plan(doc: Document, default_acl: Acl, root: str, seen: set[str], batch: "_Batch", report: IngestReport,
          record_acls: bool = True) -> None:
    if doc.id in seen:
        report.failures.append((doc.source, f"duplicate document id {doc.id!r} in this run; ids must be unique"))
        return
    report.seen += 1
    # Both markers leave the metadata (they are not the document's data). A source that mirrors its
    # own permissions (``acl_from_source``) was configured so by an admin.
    from_record = doc.metadata.pop("acl_from_record", False) and record_acls
    from_source = doc.metadata.pop("acl_from_source", False)
    if not (from_record or from_source):
        doc.acl = default_acl
    if doc.acl.is_empty:
        # Not marked seen: an indexed older version (perhaps public) is deleted, not kept.
        report.failures.append((doc.source, f"document {doc.id!r} has an empty ACL, so nobody could see it; "
                                            "give it public, users or groups"))
        return
    seen.add(doc.id)
    old = batch.collection.manifest.get(doc.id)
    if old is not None and old.root != root and old.state == "indexed":
        report.failures.append((doc.source, f"document id {doc.id!r} already comes from {old.root}; "
                                            "rename one of the folders or use another collection"))
        return
    if old is not None and old.state == "indexed" and old.hash == doc.content_hash:
        if old.meta_hash == meta_hash(doc):
            report.unchanged += 1
        else:
            batch.add_relabel(doc, root)
        return
    batch.add(doc, root, is_new=old is None)


class _Batch:
    """Documents waiting to be embedded and written together (embedding is the bottleneck,
    so chunks of many small documents share one encode call)."""

    def __init__(self, collection: Collection, report: IngestReport, on_progress: Progress | None):
        self.collection = collection
        self.report = report
        self.on_progress = on_progress
        self.chunker = Chunker.from_tokenizer(collection.pipeline.chunking, collection.embedder.tokenizer)
        self.limit = collection.pipeline.ingest.batch_chunks
        self.docs: list[tuple[Document, str, list[Chunk], bool]] = []
        self.relabels: list[tuple[Document, str]] = []
        self.n_chunks = 0
        self._measured = False

    def add(self, doc: Document, root: str, is_new: bool) -> None:
        chunks = self.chunker.chunk(doc)
        self.docs.append((doc, root, chunks, is_new))
        self.n_chunks += len(chunks)
        if self.n_chunks >= self.limit:
            self.flush()

    def add_relabel(self, doc: Document, root: str) -> None:
        self.relabels.append((doc, root))
        if len(self.relabels) >= self.limit:
            self.flush()

    def flush(self) -> None:
        if not self.docs and not self.relabels:
            return
        store, manifest = self.collection.store, self.collection.manifest
        all_docs = [(d, r) for d, r, _, _ in self.docs] + self.relabels
        # A relabelled document keeps its chunks; remember their count across mark_pending.
        collection_chunks = {d.id: rec.chunks for d, _ in self.relabels if (rec := manifest.get(d.id))}
        with manifest.batch():  # 1. pending first: a crash after this makes the next run redo them
            for doc, root in all_docs:
                manifest.mark_pending(_record(doc, root))
        chunks = [(doc, c) for doc, _, cs, _ in self.docs for c in cs]
        texts = [self._embed_text(d, c) for d, c in chunks]  # embedded, and what BM25 scores
        vectors = self.collection.embedder.embed_documents(texts)
        store.upsert([
            StoredChunk(point_id(d.id, d.content_hash, c.index), v, t, _payload(d, c))
            for (d, c), v, t in zip(chunks, vectors, texts)
        ])
        for doc, _, _, _ in self.docs:  # 2. drop chunks of any older version of these documents
            store.delete_document(doc.id, keep_hash=doc.content_hash)
        for doc, _ in self.relabels:
            store.set_document_payload(doc.id, _doc_payload(doc))
        store.flush()  # 3. durable in the store before the manifest says so
        with manifest.batch():
            for doc, _, cs, _ in self.docs:
                manifest.mark_indexed(doc.id, len(cs))
            for doc, _ in self.relabels:
                manifest.mark_indexed(doc.id, collection_chunks.get(doc.id, 0))
        for _, _, cs, is_new in self.docs:
            if is_new:
                self.report.indexed += 1
            else:
                self.report.updated += 1
        self.report.relabelled += len(self.relabels)
        self.report.chunks += len(chunks)
        self._maybe_measure_encoder()
        if self.on_progress:
            self.on_progress("chunks", self.report.chunks, 0)
        self.docs, self.relabels, self.n_chunks = [], [], 0

    def _maybe_measure_encoder(self) -> None:
        """Past ``ingest.measure_encoder_after`` chunks, an ``auto`` embedder never measured here is
        measured on the chunks written so far and switched to its fastest faithful backend: the
        rest of this ingest runs on it (its vectors agree with float32's to overlap ≥ 0.99)."""
        from ragtune.collection.encoder import tune_encoder
        from ragtune.models.encoders import recorded_choice

        threshold = self.collection.pipeline.ingest.measure_encoder_after
        embedder = self.collection.embedder
        if (self._measured or not threshold or self.report.chunks < threshold
                or getattr(embedder, "config", None) is None or embedder.config.backend != "auto"
                or getattr(embedder, "cache", None) is None or embedder.config.devices):
            return
        self._measured = True
        if recorded_choice(self.collection.encoder_cache, embedder.model) is None:
            log.info("measuring encoder backends on 256 of this collection's chunks (once per model and machine)")
            if self.on_progress:
                self.on_progress("measuring encoder backends", 0, 1)
            choice = tune_encoder(self.collection)
            if self.on_progress:
                self.on_progress("measuring encoder backends", 1, 1)
            log.info("encoder backend: %s", choice["backend"])

    def _embed_text(self, doc: Document, chunk: Chunk) -> str:
        if not self.collection.pipeline.chunking.prepend_title:
            return chunk.text
        return search_text(chunk.text, doc.title, chunk.heading_path)


def _doc_payload(doc: Document) -> dict:
    """The per-document part of every chunk payload (``DOCUMENT_FIELDS``), rewritten on relabel."""
    return {"acl": doc.acl.tokens(), "source": doc.source, "meta": doc.metadata}


def _payload(doc: Document, chunk: Chunk) -> dict:
    parent = doc.text[chunk.parent_start:chunk.parent_end]
    return ChunkPayload(
        chunk_id=chunk.id, doc_id=doc.id, doc_hash=doc.content_hash, text=chunk.text, title=doc.title,
        start=chunk.start, end=chunk.end, headings=list(chunk.heading_path),
        parent_text=parent if parent != chunk.text else "",
        acl=doc.acl.tokens(), source=doc.source, meta=doc.metadata,
    ).to_payload()


def _record(doc: Document, root: str) -> DocRecord:
    return DocRecord(doc.id, doc.source, root, doc.title, doc.content_hash, meta_hash(doc), doc.mtime,
                     doc.acl.to_dict(), "pending", 0, None)


def _delete_missing(collection: Collection, root: str, seen: set[str], failed_sources: set[str],
                    report: IngestReport) -> None:
    """Remove documents of this root that are gone, but never those of a file that failed to
    load this time (it still exists: keep its last good version rather than lose it)."""
    _delete_records(collection, [r for r in collection.manifest.all(root)
                                 if r.doc_id not in seen and r.source not in failed_sources], report)


def _delete_records(collection: Collection, recs: list[DocRecord], report: IngestReport) -> None:
    """Chunks first, then the manifest rows (a crash in between leaves rows the next sync deletes).
    Callers pass records of their own root only: a source never deletes another's."""
    if not recs:
        return
    for rec in recs:
        collection.store.delete_document(rec.doc_id)
    collection.store.flush()
    with collection.manifest.batch():
        for rec in recs:
            collection.manifest.remove(rec.doc_id)
    report.deleted += len(recs)
