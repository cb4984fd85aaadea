"""PDF via pypdf: the text layer of every page, pages separated by blank lines."""

from __future__ import annotations

from pathlib import Path

from ragtune.ingest.loaders.base import LoadError, LoadResult, file_document


def load_pdf(path: Path, doc_id: str) -> LoadResult:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path)
        if reader.is_encrypted:
            raise LoadError("PDF is encrypted; decrypt it first (e.g. qpdf --decrypt)")
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
        info_title = (reader.metadata.title if reader.metadata else None) or ""
    except LoadError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as e:
        raise LoadError(f"not a readable PDF ({type(e).__name__}: {e})") from e
    text = "\n\n".join(p for p in pages if p)
    if not text:
        raise LoadError("PDF has no text layer (scanned?); run OCR on it first")
    return LoadResult([file_document(path, doc_id, text, title=str(info_title), metadata={"pages": len(pages)})])
