"""``ragtune eval ingest``: is the index complete, fresh and correct with respect to its sources?

- completeness: documents found in the source roots now vs indexed vs failed in the last run;
- freshness: lag between a file's modification and the indexing of that version, and files
  modified since they were indexed (stale) or never indexed (missing);
- correctness: every indexed chunk's text equals the span ``[start, end)`` of its source
  document as the loader reads it today (for sources unchanged since indexing).

Example:
    >>> import pathlib, tempfile
    >>> from ragtune.collection import Collection
    >>> from ragtune.evaluate.ingestion import evaluate_ingestion
    >>> from ragtune.ingest.sync import ingest
    >>> from ragtune.types import Acl
    >>> src = pathlib.Path(tempfile.mkdtemp()); _ = (src / "a.md").write_text("# A\\n\\nApples.")
    >>> with Collection.create(tempfile.mkdtemp(), "c") as c:
    ...     _ = ingest(c, src, Acl(public=True))
    ...     r = evaluate_ingestion(c)
    >>> r["completeness"]["indexed"], r["correctness"]["mismatched_chunks"]
    (1, 0)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ragtune.collection import Collection
from ragtune.ingest.loaders import load_file
from ragtune.ingest.walk import walk


def evaluate_ingestion(collection: Collection) -> dict[str, Any]:
    manifest = collection.manifest
    records = {r.doc_id: r for r in manifest.all()}
    cfg = collection.pipeline.ingest
    found: dict[str, Path] = {}
    for root in sorted({r.root for r in records.values()}):
        if Path(root).exists():
            for source in walk(Path(root), cfg.include, cfg.exclude):
                found.setdefault(str(source.path), source.path)
    indexed = [r for r in records.values() if r.state == "indexed"]
    last = manifest.last_run() or {}
    sources_indexed = {r.source for r in indexed}
    # Modified on disk since the indexed version was read (a re-ingest would pick it up).
    stale = [r.doc_id for r in indexed if r.source in found and found[r.source].stat().st_mtime != r.mtime]
    missing_sources = sorted(s for s in found if s not in sources_indexed)
    lags = [r.indexed_at - r.mtime for r in indexed if r.indexed_at and r.mtime]
    return {
        "collection": collection.name,
        "completeness": {
            "source_files_found": len(found),
            "source_files_indexed": len(sources_indexed & set(found)),
            "source_files_not_indexed": missing_sources[:50],
            "documents": len(records),
            "indexed": len(indexed),
            "pending": len(records) - len(indexed),
            "failed_last_run": last.get("failed", 0),
            "chunks_manifest": sum(r.chunks for r in indexed),
            "chunks_store": collection.store.count(),
        },
        "freshness": {
            "last_run_finished": last.get("finished"),
            "stale_documents": len(stale),
            "stale_examples": stale[:20],
            "index_lag_seconds_p50": float(np.percentile(lags, 50)) if lags else None,
            "index_lag_seconds_max": float(max(lags)) if lags else None,
        },
        "correctness": _check_spans(collection, set(stale)),
    }


def _check_spans(collection: Collection, stale: set[str]) -> dict[str, Any]:
    """Re-read every unchanged source and compare each stored chunk with its span."""
    by_source: dict[str, list[dict]] = {}
    for p in collection.store.scroll_payloads(["doc_id", "doc_hash", "text", "start", "end", "source"]):
        by_source.setdefault(p["source"], []).append(p)
    checked, mismatched, skipped = 0, 0, 0
    examples: list[dict] = []
    for source, chunks in by_source.items():
        if not Path(source).is_file():
            skipped += len(chunks)
            continue
        docs = {d.id: d for d in load_file(Path(source), _file_doc_id(chunks[0]["doc_id"])).documents}
        for c in chunks:
            doc = docs.get(c["doc_id"])
            if c["doc_id"] in stale or doc is None or doc.content_hash != c["doc_hash"]:
                skipped += 1  # changed since indexing: freshness reports it, not correctness
                continue
            checked += 1
            if doc.text[c["start"]:c["end"]] != c["text"]:
                mismatched += 1
                if len(examples) < 10:
                    examples.append({"doc_id": c["doc_id"], "start": c["start"], "end": c["end"]})
    return {"checked_chunks": checked, "mismatched_chunks": mismatched, "skipped_chunks": skipped,
            "mismatch_examples": examples}


def _file_doc_id(doc_id: str) -> str:
    # Records without an id of their own are named "<file id>#<line>"; any other id is either the
    # file's own id or a record's explicit id, and then the file id does not matter.
    return doc_id.rsplit("#", 1)[0]
