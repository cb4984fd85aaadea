"""Query strategies: turn one question into the queries that are searched.

- ``plain``: the question itself;
- ``decompose``: an LLM splits a compound question into simple sub-questions, each searched;
- ``multi_query``: an LLM rewrites the question several ways, each searched.

The original question is always searched too, and the per-query results are merged by
reciprocal rank fusion (each list is already access-filtered by the store). A small model's
output is often unusable; then the strategy quietly falls back to the question alone.

Example:
    >>> from ragtune.retrieve.strategies import parse_questions
    >>> parse_questions("1. How many leave days?\\n2) How often are laptops replaced?\\nSure!", limit=3)
    ['How many leave days?', 'How often are laptops replaced?']
"""

from __future__ import annotations

import re

from ragtune.errors import InputError
from ragtune.index.fusion import rrf_scores
from ragtune.models.generator import GenerationConfig, Generator
from ragtune.types import Hit

DECOMPOSE = ("Split the question into at most {n} simple, self-contained questions, one per line. "
             "If it is already simple, write it once.\n\nQuestion: {question}")
MULTI_QUERY = ("Write {n} different ways to ask the following question, one per line, "
               "keeping its meaning.\n\nQuestion: {question}")
_BULLET = re.compile(r"^\s*(?:[-*•]|\(?\d+[.):]|q\d*[.:])\s*", re.IGNORECASE)


def parse_questions(text: str, limit: int) -> list[str]:
    """Lines that look like questions, without list markers; duplicates and chatter dropped."""
    out: list[str] = []
    for line in text.splitlines():
        q = _BULLET.sub("", line).strip().strip('"')
        if q.endswith("?") and 3 <= len(q.split()) <= 40 and q.lower() not in (o.lower() for o in out):
            out.append(q)
    return out[:limit]


def expand(question: str, strategy: str, generator: Generator | None, limit: int = 3) -> list[str]:
    """The queries to search for ``question``: always the question first, then usable sub-queries."""
    if strategy == "plain" or generator is None:
        return [question]
    template = {"decompose": DECOMPOSE, "multi_query": MULTI_QUERY}.get(strategy)
    if template is None:
        raise InputError(f"unknown query strategy {strategy!r}; use plain, decompose or multi_query")
    try:
        reply = generator.generate([{"role": "user", "content": template.format(n=limit, question=question)}],
                                   GenerationConfig(max_new_tokens=96, repetition_penalty=1.15)).text
    except Exception:  # a failing rewrite must never cost the user the plain search
        return [question]
    extra = [q for q in parse_questions(reply, limit) if q.lower() != question.lower()]
    return [question] + extra


def fuse(result_lists: list[list[Hit]], k: int, rrf_k: int = 60) -> list[Hit]:
    """Reciprocal rank fusion of several hit lists by chunk id (the store fuses retrievers
    inside one query; this fuses the answers to several queries)."""
    score = rrf_scores({str(i): [h.chunk_id for h in hits] for i, hits in enumerate(result_lists)}, rrf_k)
    best: dict[str, Hit] = {}  # per chunk, the hit with the highest score (its ranks and scores are kept)
    for hits in result_lists:
        for hit in hits:
            if hit.chunk_id not in best or hit.score > best[hit.chunk_id].score:
                best[hit.chunk_id] = hit
    return [best[c] for c in sorted(score, key=lambda c: -score[c])[:k]]
