"""Citations in generated text: ``[1]``, ``[2, 3]``, ``[1][4]``, mapped to passages; numbers
that point at no passage are dropped.

Example:
    >>> from ragtune.answer.citations import cited_numbers
    >>> cited_numbers("Paris [1], per [2, 5] and [9].", n_passages=5)
    [1, 2, 5]
    >>> from ragtune.answer.citations import strip_citations
    >>> strip_citations("Paris [1], per [2, 5].")
    'Paris, per.'
"""

from __future__ import annotations

import re

_BRACKET = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")


def cited_numbers(text: str, n_passages: int) -> list[int]:
    out: list[int] = []
    for m in _BRACKET.finditer(text):
        for part in m.group(1).split(","):
            n = int(part)
            if 1 <= n <= n_passages and n not in out:
                out.append(n)
    return out


def strip_citations(text: str) -> str:
    """The answer without its citation markers (what extractive metrics should compare)."""
    return re.sub(r"\s+([.,;:!?])", r"\1", _BRACKET.sub("", text)).strip()
