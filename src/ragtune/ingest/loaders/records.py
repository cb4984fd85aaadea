"""JSON, JSONL and BEIR ``corpus.jsonl``: files of records, each record one document.

A record needs a text field (``text``, ``content`` or ``body``); ``_id``/``id``, ``title``,
``metadata`` (object) and ``acl`` (``{"public": bool, "users": [...], "groups": [...]}``) are
optional. Records with an id keep it verbatim (so BEIR qrels match); others get
``<file>#<line>``. A bad record is reported with its line and skipped; the rest still load.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ragtune.ingest.loaders.base import (
    LoadError,
    LoadFailure,
    LoadResult,
    file_document,
    read_text_file,
)
from ragtune.types import Acl, Document

TEXT_FIELDS = ("text", "content", "body")
ID_FIELDS = ("_id", "id")


def record_to_document(record: Any, path: Path, fallback_id: str) -> Document:
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    text_field = next((f for f in TEXT_FIELDS if f in record), None)
    if text_field is None:
        raise ValueError(f"no text field; give one of {', '.join(TEXT_FIELDS)}")
    text = record[text_field]
    if not isinstance(text, str):
        raise ValueError(f"field {text_field!r} must be a string")
    title = record.get("title") or ""
    if not isinstance(title, str):
        raise ValueError("field 'title' must be a string")
    if not (text.strip() or title.strip()):
        raise ValueError("record has neither text nor title")
    id_field = next((f for f in ID_FIELDS if f in record), None)
    doc_id = str(record[id_field]) if id_field else fallback_id
    metadata = record.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise ValueError("field 'metadata' must be an object")
    doc = file_document(path, doc_id, text, title=title, metadata=metadata)
    doc.title = title  # records have their own titles; no file-stem fallback
    if "acl" in record:
        doc.acl = Acl.from_dict(record["acl"])
        doc.metadata["acl_from_record"] = True
    return doc


def load_jsonl(path: Path, doc_id: str) -> LoadResult:
    result = LoadResult()
    for lineno, line in enumerate(read_text_file(path).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            result.documents.append(record_to_document(json.loads(line), path, f"{doc_id}#{lineno}"))
        except (json.JSONDecodeError, ValueError) as e:
            result.failures.append(LoadFailure(where, f"bad record: {e}"))
    if not result.documents and not result.failures:
        raise LoadError("file is empty")
    return result


def load_json(path: Path, doc_id: str) -> LoadResult:
    try:
        data = json.loads(read_text_file(path))
    except json.JSONDecodeError as e:
        raise LoadError(f"not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from e
    records = data if isinstance(data, list) else [data]
    result = LoadResult()
    for i, record in enumerate(records):
        try:
            result.documents.append(record_to_document(record, path, f"{doc_id}#{i}" if len(records) > 1 else doc_id))
        except ValueError as e:
            result.failures.append(LoadFailure(f"{path}[{i}]", f"bad record: {e}"))
    return result
