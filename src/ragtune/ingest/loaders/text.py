"""Plain text (.txt) and Markdown (.md): the text is kept verbatim (Markdown headings guide chunking)."""

from __future__ import annotations

import re
from pathlib import Path

from ragtune.ingest.loaders.base import (
    LoadError,
    LoadResult,
    file_document,
    read_text_file,
)

_MD_TITLE = re.compile(r"^#\s+(.+?)\s*#*\s*$", re.MULTILINE)


def load_text(path: Path, doc_id: str) -> LoadResult:
    text = read_text_file(path)
    if not text.strip():
        raise LoadError("file is empty")
    return LoadResult([file_document(path, doc_id, text, title="")])


def load_markdown(path: Path, doc_id: str) -> LoadResult:
    text = read_text_file(path)
    if not text.strip():
        raise LoadError("file is empty")
    m = _MD_TITLE.search(text)
    return LoadResult([file_document(path, doc_id, text, title=m.group(1) if m else "")])
