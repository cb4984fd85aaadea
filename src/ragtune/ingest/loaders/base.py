"""What every loader returns, and the errors it raises.

A loader turns one file into zero or more :class:`~ragtune.types.Document` objects. A file that
cannot be read at all raises :class:`LoadError`; a multi-record file (JSONL, BEIR) with some bad
records returns the good ones and lists the bad ones as :class:`LoadFailure`, so one bad record
never costs the rest.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from ragtune.types import Document


@dataclass(frozen=True)
class LoadOptions:
    """How formats with choices are read (the pipeline's ``ingest`` settings): PDF tables as rows
    that carry their header, OCR for pages without a text layer."""

    pdf_tables: bool = False
    ocr: bool = False
    ocr_languages: str = "eng"  # tesseract language codes, "+"-joined


class LoadError(Exception):
    """The whole file is unreadable; the message says why and what to do."""


@dataclass
class LoadFailure:
    source: str
    reason: str


@dataclass
class LoadResult:
    documents: list[Document] = field(default_factory=list)
    failures: list[LoadFailure] = field(default_factory=list)


def content_hash(doc: Document) -> str:
    """Hash of what gets embedded: a change here means the document must be re-chunked."""
    h = hashlib.sha256()
    h.update(doc.title.encode())
    h.update(b"\0")
    h.update(doc.text.encode())
    return h.hexdigest()


def meta_hash(doc: Document) -> str:
    """Hash of what only lives in the payload (ACL, metadata, source): no re-embedding needed."""
    blob = json.dumps([doc.acl.to_dict(), doc.metadata, doc.source], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def read_text_file(path: Path) -> str:
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        raise LoadError("looks binary (NUL bytes), not text; exclude it or convert it to text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise LoadError(
            f"not valid UTF-8 (byte {e.start}); re-save it as UTF-8 or exclude it"
        ) from e


def file_document(path: Path, doc_id: str, text: str, title: str, metadata: dict | None = None) -> Document:
    """A document read from ``path``. ``metadata`` is a dict, not keyword arguments: a record's
    own keys (``title``, ``text``, ``path``…) are data, never parameters."""
    stat = path.stat()
    return Document(
        id=doc_id,
        text=text,
        source=str(path),
        title=title or path.stem,
        metadata={"format": path.suffix.lstrip(".").lower(), "size": stat.st_size, **(metadata or {})},
        mtime=stat.st_mtime,
    )
