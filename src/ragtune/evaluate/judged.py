"""Relevance judged by a teacher over the pooled results of two systems.

The synthetic dev set of the adaptation loop counts only the chunk a question was written from as
relevant. A candidate embedder that learned the writer's habits finds that chunk more often and
looks better there while real users see no change (issue 25). A judge that reads the passages —
a cross-encoder — instead grades every chunk either system returns (TREC-style pooling of both
top-``pool`` lists), so a candidate is credited for bringing up any passage the judge finds
relevant, not only the one the question was copied from.

Grades are integers for ``ir-measures``: ``round(max_grade · sigmoid(logit))``; a probe's own
source chunk, where it has one, keeps the top grade.

Example:
    >>> from ragtune.evaluate.judged import grade, judged_qrels
    >>> grade(4.0), grade(0.0), grade(-4.0)
    (3, 2, 0)
    >>> judge = lambda query, ids: [3.0 if i == "c2" else -3.0 for i in ids]
    >>> judged_qrels({"q": "x"}, [{"q": {"c1": 0, "c2": -1}}, {"q": {"c3": 0}}], judge, {"q": {"c1"}}, pool=2)
    {'q': {'c1': 3, 'c2': 3, 'c3': 0}}
"""

from __future__ import annotations

import math
from typing import Callable

Judge = Callable[[str, list[str]], list[float]]  # (query, chunk ids) -> relevance logits
MAX_GRADE = 3


def grade(logit: float, max_grade: int = MAX_GRADE) -> int:
    """An integer relevance grade from a cross-encoder logit (its sigmoid, scaled)."""
    return int(round(max_grade / (1.0 + math.exp(-logit))))


def top(run: dict[str, float], n: int) -> list[str]:
    return [d for d, _ in sorted(run.items(), key=lambda kv: -kv[1])[:n]]


def judged_qrels(queries: dict[str, str], runs: list[dict[str, dict[str, float]]], judge: Judge,
                 sources: dict[str, set[str]] | None = None, pool: int = 10) -> dict[str, dict[str, int]]:
    """Graded qrels for every query: the union of each run's top ``pool`` judged by ``judge``;
    ``sources`` (the chunk a probe was written from) keep the top grade."""
    out: dict[str, dict[str, int]] = {}
    for qid, text in queries.items():
        pooled = list(dict.fromkeys(d for run in runs for d in top(run.get(qid, {}), pool)))
        grades = {d: grade(s) for d, s in zip(pooled, judge(text, pooled))} if pooled else {}
        for d in (sources or {}).get(qid, ()):
            grades[d] = MAX_GRADE
        out[qid] = grades
    return out


def cross_encoder_judge(model: str, texts: dict[str, str], device: str | None = None) -> Judge:
    """A trained reranker (folder or id) as the judge, reading the text each chunk is searched as."""
    from ragtune.synth.teacher import cross_encoder_scorer

    return cross_encoder_scorer(model, texts, device)
