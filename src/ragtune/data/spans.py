"""Where a gold answer sits among retrieved chunks.

A SQuAD context is indexed as the document ``<article>-p<paragraph>`` (``context_doc_id``); a
retrieved chunk *holds* an answer when it contains the whole span or at least half of it (answers
longer than the chunk overlap can straddle two chunks). Evaluation, RAG-shaped SFT rows and
end-to-end training all use this one rule.

Example:
    >>> from ragtune.data.squad import QAExample
    >>> from ragtune.types import Hit
    >>> ex = QAExample("q1", "Who?", "Ana wrote it in 1990.", ["1990"], [16], article_id="a", paragraph_index=0)
    >>> hits = [Hit("x", "other-p0", "", 1.0, start=0, end=20), Hit("y", "a-p0", "", 0.9, start=10, end=21)]
    >>> context_doc_id(ex), answer_rank(hits, ex)
    ('a-p0', 2)
"""

from __future__ import annotations

from ragtune.data.squad import QAExample
from ragtune.types import Hit


def context_doc_id(ex: QAExample) -> str:
    return f"{ex.article_id}-p{ex.paragraph_index}"


def holds_answer(hit: Hit, ex: QAExample) -> bool:
    if hit.doc_id != context_doc_id(ex):
        return False
    for text, start in zip(ex.answers, ex.answer_starts):
        end = start + len(text)
        overlap = min(end, hit.end) - max(start, hit.start)
        if overlap >= len(text) or (len(text) and overlap >= len(text) / 2):
            return True
    return False


def answer_rank(hits: list[Hit], ex: QAExample) -> int | None:
    """1-based rank of the first retrieved chunk that holds a gold answer span, else None."""
    return next((rank for rank, hit in enumerate(hits, start=1) if holds_answer(hit, ex)), None)
