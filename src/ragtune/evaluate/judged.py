"""Relevance judged by a teacher over the pooled results of two systems.

The synthetic dev set of the adaptation loop counts only the chunk a question was written from as
relevant. A candidate embedder that learned the writer's habits finds that chunk more often and
looks better there while real users see no change (issue 25). A judge that reads the passages —
a cross-encoder — instead grades every chunk either system returns (TREC-style pooling of both
top-``pool`` lists), so a candidate is credited for bringing up any passage the judge finds
relevant, not only the one the question was copied from.

Grades are integers for ``ir-measures``: ``round(max_grade · sigmoid(logit))``; a probe's own
source chunk, where it has one, keeps the top grade (``grading="absolute"``). A reranker is trained
to rank, not to be calibrated: a weak one puts most pooled chunks at grade 1–2, and two versions
that reorder the same top 10 then differ little on nDCG@10 (issue 25 measured probe Δs 3–6x smaller
than the real queries' Δ). ``grading="relative"`` asks the judge only what it was trained to say:
a pooled chunk is relevant (top grade) when the judge ranks it at least as high as the probe's own
source chunk, else not; queries without a source fall back to the absolute grades.
``grading="ranked"`` also keeps only the judge's order, over the whole pool: its best two chunks
get the top grade, the next two one less, and so on down to 0 (a source chunk keeps the top grade),
so a version gains by bringing the judge's favourites up, whatever the judge's scale; unlike
``relative`` it works without a source and grades several chunks (less variance than one).

Example:
    >>> from ragtune.evaluate.judged import grade, judged_qrels
    >>> grade(4.0), grade(0.0), grade(-4.0)
    (3, 2, 0)
    >>> judge = lambda query, ids: [3.0 if i == "c2" else -3.0 for i in ids]
    >>> judged_qrels({"q": "x"}, [{"q": {"c1": 0, "c2": -1}}, {"q": {"c3": 0}}], judge, {"q": {"c1"}}, pool=2)
    {'q': {'c1': 3, 'c2': 3, 'c3': 0}}
    >>> judge2 = lambda query, ids: [{"c1": 0.5, "c2": 0.8, "c3": 0.2}[i] for i in ids]  # weak: all near 0
    >>> runs = [{"q": {"c1": 0, "c2": -1}}, {"q": {"c3": 0}}]
    >>> judged_qrels({"q": "x"}, runs, judge2, {"q": {"c1"}}, pool=2), judged_qrels({"q": "x"}, runs, judge2, {"q": {"c1"}}, pool=2, grading="relative")
    ({'q': {'c1': 3, 'c2': 2, 'c3': 2}}, {'q': {'c1': 3, 'c2': 3, 'c3': 0}})
    >>> judged_qrels({"q": "x"}, runs, judge2, None, pool=2, grading="ranked")
    {'q': {'c2': 3, 'c1': 3, 'c3': 2}}
"""

from __future__ import annotations

import math
from typing import Callable

Judge = Callable[[str, list[str]], list[float]]  # (query, chunk ids) -> relevance logits
MAX_GRADE = 3
GRADINGS = ("absolute", "relative", "ranked")
RANK_BAND = 2  # ranked grading: chunks per grade, from the judge's best down


def grade(logit: float, max_grade: int = MAX_GRADE) -> int:
    """An integer relevance grade from a cross-encoder logit (its sigmoid, scaled)."""
    return int(round(max_grade / (1.0 + math.exp(-logit))))


def ranked_grades(logits: dict[str, float], band: int = RANK_BAND) -> dict[str, int]:
    """Grades from the judge's order alone: its best ``band`` chunks the top grade, the next ``band``
    one less, ... then 0.

    >>> ranked_grades({"a": 0.1, "b": 0.3, "c": -2.0, "d": 0.2, "e": -1.0, "f": -1.5, "g": -3.0})
    {'b': 3, 'd': 3, 'a': 2, 'e': 2, 'f': 1, 'c': 1, 'g': 0}
    """
    order = sorted(logits, key=lambda d: -logits[d])
    return {d: max(0, MAX_GRADE - i // band) for i, d in enumerate(order)}


def top(run: dict[str, float], n: int) -> list[str]:
    return [d for d, _ in sorted(run.items(), key=lambda kv: -kv[1])[:n]]


def judged_qrels(queries: dict[str, str], runs: list[dict[str, dict[str, float]]], judge: Judge,
                 sources: dict[str, set[str]] | None = None, pool: int = 10,
                 grading: str = "absolute") -> dict[str, dict[str, int]]:
    """Graded qrels for every query: the union of each run's top ``pool`` judged by ``judge``;
    ``sources`` (the chunk a probe was written from) keep the top grade. ``grading``: see the module."""
    if grading not in GRADINGS:
        raise ValueError(f"grading {grading!r}: choose from {', '.join(GRADINGS)}")
    out: dict[str, dict[str, int]] = {}
    for qid, text in queries.items():
        own = (sources or {}).get(qid, set())
        pooled = list(dict.fromkeys(d for run in runs for d in top(run.get(qid, {}), pool)))
        if grading == "relative" and own:
            pooled = list(dict.fromkeys([*pooled, *sorted(own)]))  # the source is judged too: the bar
        grades = _grades(dict(zip(pooled, judge(text, pooled))) if pooled else {}, own, grading)
        out[qid] = grades | {d: MAX_GRADE for d in own}
    return out


def _grades(logits: dict[str, float], own: set[str], grading: str) -> dict[str, int]:
    if grading == "relative" and own:
        bar = min(logits[d] for d in own)
        return {d: MAX_GRADE if s >= bar else 0 for d, s in logits.items()}
    if grading == "ranked":
        return ranked_grades(logits)
    return {d: grade(s) for d, s in logits.items()}


def cross_encoder_judge(model: str, texts: dict[str, str], device: str | None = None) -> Judge:
    """A trained reranker (folder or id) as the judge, reading the text each chunk is searched as."""
    from ragtune.synth.teacher import cross_encoder_scorer

    return cross_encoder_scorer(model, texts, device)
