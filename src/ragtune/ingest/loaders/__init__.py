"""Loaders, one module per format, picked by file extension.

Example:
    >>> from pathlib import Path
    >>> from ragtune.ingest.loaders import loader_for
    >>> loader_for(Path("notes.md")).__name__
    'load_markdown'
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ragtune.ingest.loaders.base import (
    LoadError,
    LoadFailure,
    LoadOptions,
    LoadResult,
    content_hash,
    meta_hash,
)
from ragtune.ingest.loaders.docx import load_docx
from ragtune.ingest.loaders.html import load_html
from ragtune.ingest.loaders.pdf import load_pdf
from ragtune.ingest.loaders.records import load_json, load_jsonl
from ragtune.ingest.loaders.text import load_markdown, load_text

Loader = Callable[[Path, str], LoadResult]

LOADERS: dict[str, Loader] = {
    ".txt": load_text,
    ".text": load_text,
    ".md": load_markdown,
    ".markdown": load_markdown,
    ".html": load_html,
    ".htm": load_html,
    ".pdf": load_pdf,
    ".docx": load_docx,
    ".json": load_json,
    ".jsonl": load_jsonl,  # BEIR corpus.jsonl is a JSONL file of {_id, title, text}
}


def loader_for(path: Path) -> Loader | None:
    return LOADERS.get(path.suffix.lower())


def load_file(path: Path, doc_id: str, options: LoadOptions | None = None) -> LoadResult:
    """Load one file; any failure of the whole file comes back as a LoadFailure, never raised.
    ``options``: the pipeline's reading choices (only PDF has any: tables, OCR)."""
    loader = loader_for(path)
    if loader is None:
        return LoadResult(failures=[LoadFailure(str(path), f"unsupported file type {path.suffix!r}; "
                                                f"supported: {', '.join(sorted(LOADERS))}")])
    try:
        result = load_pdf(path, doc_id, options) if loader is load_pdf else loader(path, doc_id)
    except LoadError as e:
        return LoadResult(failures=[LoadFailure(str(path), str(e))])
    except OSError as e:
        return LoadResult(failures=[LoadFailure(str(path), f"cannot read: {e.strerror or e}")])
    except Exception as e:  # a parser bug on one odd file must not stop the batch
        return LoadResult(failures=[LoadFailure(str(path), f"{type(e).__name__}: {e}")])
    for doc in result.documents:
        doc.content_hash = content_hash(doc)
    return result


__all__ = ["LOADERS", "LoadError", "LoadFailure", "LoadOptions", "LoadResult", "content_hash", "load_file", "loader_for", "meta_hash"]
