"""HTML: readable text only. Headings become Markdown ``#`` lines so the chunker sees the structure."""

from __future__ import annotations

from pathlib import Path

from bs4 import BeautifulSoup

from ragtune.ingest.loaders.base import (
    LoadError,
    LoadResult,
    file_document,
    read_text_file,
)

_DROP = ["script", "style", "noscript", "template", "svg", "nav", "header", "footer", "form", "iframe"]
_HEADINGS = {f"h{i}": i for i in range(1, 7)}
_BLOCKS = {"p", "li", "pre", "blockquote", "td", "th", "dt", "dd", "figcaption", "caption"}


def html_to_text(markup: str, main_content: bool = False) -> tuple[str, str]:
    """Return (title, text): block elements become paragraphs, headings ``#`` lines.
    ``main_content``: only the page's main region (``<main>``, ``role=main`` or its one
    ``<article>``) where it has one — a crawled site repeats its menus and sidebars on every page."""
    return soup_to_text(BeautifulSoup(markup, "lxml"), main_content)


def soup_to_text(soup: BeautifulSoup, main_content: bool = False) -> tuple[str, str]:
    """:func:`html_to_text` of a parsed page (a crawler that also reads its links parses once).
    The soup is changed: menus, scripts and the like are removed from it."""
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for tag in soup(_DROP):
        tag.decompose()
    body = soup.body or soup
    if main_content:
        articles = body.find_all("article")
        main = body.find("main") or body.find(True, {"role": "main"}) or (articles[0] if len(articles) == 1 else None)
        if main is not None and main.get_text(strip=True):
            body = main
    blocks: list[str] = []
    for el in body.find_all(list(_HEADINGS) + list(_BLOCKS)):
        # Nested blocks (a <p> inside an <li>) would be emitted twice; keep the innermost.
        if el.name in _BLOCKS and el.find(list(_BLOCKS)):
            continue
        text = " ".join(el.get_text(" ", strip=True).split())
        if not text:
            continue
        blocks.append(f"{'#' * _HEADINGS[el.name]} {text}" if el.name in _HEADINGS else text)
    if not blocks:  # markup without block elements: fall back to all visible text
        blocks = [" ".join(body.get_text(" ", strip=True).split())]
    if not title:
        h1 = body.find("h1")
        title = h1.get_text(" ", strip=True) if h1 else ""
    return title, "\n\n".join(b for b in blocks if b)


def load_html(path: Path, doc_id: str) -> LoadResult:
    title, text = html_to_text(read_text_file(path))
    if not text.strip():
        raise LoadError("no readable text in the HTML")
    return LoadResult([file_document(path, doc_id, text, title=title)])
