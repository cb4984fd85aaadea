"""Word .docx via python-docx: paragraphs in order, Heading styles as ``#`` lines, tables as rows."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

from ragtune.ingest.loaders.base import LoadError, LoadResult, file_document

_HEADING = re.compile(r"^Heading (\d)$")


def load_docx(path: Path, doc_id: str) -> LoadResult:
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        document = docx.Document(str(path))
    except (zipfile.BadZipFile, PackageNotFoundError, KeyError, ValueError) as e:
        raise LoadError(f"not a readable .docx ({type(e).__name__}: {e}); re-save it from Word") from e
    blocks: list[str] = []
    title = document.core_properties.title or ""
    for para in document.paragraphs:
        text = para.text.strip()
        if not text:
            continue
        style = para.style.name if para.style is not None else ""
        m = _HEADING.match(style)
        if style == "Title":
            title = title or text
            blocks.append(f"# {text}")
        elif m:
            blocks.append(f"{'#' * int(m.group(1))} {text}")
        else:
            blocks.append(text)
    for table in document.tables:
        for row in table.rows:
            cells = [c.text.strip() for c in row.cells if c.text.strip()]
            if cells:
                blocks.append(" | ".join(cells))
    if not blocks:
        raise LoadError("the .docx holds no text")
    return LoadResult([file_document(path, doc_id, "\n\n".join(blocks), title=title)])
