"""PDF: the text layer of every page, pages separated by blank lines.

By default through pypdf. Two opt-in choices (``ingest.pdf_tables``, ``ingest.ocr``):

- *tables*: pdfplumber finds each page's tables; the page's other text is kept as text and each
  table row becomes one line that names its columns (``Item: Laptop; Cost: 1200``), so a row keeps
  its header wherever the chunker cuts;
- *OCR*: a page with no text layer (a scan) is rendered at 300 dpi (pypdfium2) and read by
  Debian's ``tesseract`` — offline, nothing leaves the machine.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from ragtune.ingest.loaders.base import LoadError, LoadOptions, LoadResult, file_document


def load_pdf(path: Path, doc_id: str, options: LoadOptions | None = None) -> LoadResult:
    options = options or LoadOptions()
    pages, title = _pypdf_pages(path)
    if options.pdf_tables:
        pages = _pages_with_tables(path)
    if options.ocr:
        pages = [text or _ocr_page(path, i, options.ocr_languages) for i, text in enumerate(pages)]
    text = "\n\n".join(p for p in pages if p)
    if not text:
        hint = "" if options.ocr else "; set ingest.ocr=true to read scanned pages with OCR"
        raise LoadError(f"PDF has no text layer (scanned?){hint}")
    return LoadResult([file_document(path, doc_id, text, title=title, metadata={"pages": len(pages)})])


def _pypdf_pages(path: Path) -> tuple[list[str], str]:
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
    return pages, str(info_title)


def table_lines(rows: list[list[str | None]]) -> list[str]:
    """A table's rows as lines that carry their header (the first row).

    >>> table_lines([["Item", "Cost"], ["Laptop", "1200"], ["Desk", None]])
    ['Item: Laptop; Cost: 1200', 'Item: Desk']
    """
    cells = [[" ".join((c or "").split()) for c in row] for row in rows if any(c and c.strip() for c in row)]
    if len(cells) < 2:
        return [" | ".join(c for c in row if c) for row in cells]
    header = [h or f"column {i + 1}" for i, h in enumerate(cells[0])]
    return ["; ".join(f"{h}: {v}" for h, v in zip(header, row) if v) for row in cells[1:]]


def _pages_with_tables(path: Path) -> list[str]:
    import pdfplumber

    out = []
    with pdfplumber.open(path) as pdf:
        for page in pdf.pages:
            tables = page.find_tables()
            boxes = [t.bbox for t in tables]

            def outside(obj, boxes=boxes) -> bool:
                x, top = (obj.get("x0", 0) + obj.get("x1", 0)) / 2, (obj.get("top", 0) + obj.get("bottom", 0)) / 2
                return not any(b[0] <= x <= b[2] and b[1] <= top <= b[3] for b in boxes)

            parts = [(page.filter(outside).extract_text() or "").strip()]
            for table in tables:
                parts.append("\n".join(table_lines(table.extract())))
            out.append("\n\n".join(p for p in parts if p))
    return out


def _ocr_page(path: Path, index: int, languages: str) -> str:
    import pypdfium2 as pdfium

    binary = shutil.which("tesseract")
    if binary is None:
        raise LoadError("OCR needs Debian's tesseract (apt-get install tesseract-ocr), or set ingest.ocr=false")
    pdf = pdfium.PdfDocument(str(path))
    try:
        image = pdf[index].render(scale=300 / 72).to_pil()
    finally:
        pdf.close()
    with tempfile.TemporaryDirectory(prefix="ragtune-ocr-") as scratch:
        png = Path(scratch) / "page.png"
        image.save(png)
        done = subprocess.run([binary, str(png), "stdout", "-l", languages], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise LoadError(f"OCR of page {index + 1} failed: {done.stderr.strip()[:200]}")
    return done.stdout.strip()
