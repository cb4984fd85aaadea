"""Abstention by retrieval confidence: if even the best visible chunk is far from the question,
do not ask the model at all.

The confidence is the best dense (cosine) score among the retrieved hits. The threshold is not
a constant: :func:`calibrate_threshold` picks it from held-out questions whose answers are in the
collection (should answer) and questions whose answers are not (should abstain), maximising
balanced accuracy; the pipeline stores it as ``answer.min_retrieval_confidence``.

Example:
    >>> from ragtune.answer.abstain import calibrate_threshold
    >>> c = calibrate_threshold(answerable=[0.62, 0.55, 0.71, 0.48], unanswerable=[0.21, 0.33, 0.40, 0.52])
    >>> round(c.threshold, 3), c.answer_recall, c.abstain_recall
    (0.44, 1.0, 0.75)
"""

from __future__ import annotations

from dataclasses import dataclass

from ragtune.errors import InputError
from ragtune.types import Hit


def retrieval_confidence(hits: list[Hit]) -> float | None:
    """Best dense similarity among the hits; None when no hit has one (BM25-only search, or a
    hybrid search made without ``dense_scores``, which carries only the fused score)."""
    dense = [h.scores["dense"] for h in hits if "dense" in h.scores]
    return max(dense) if dense else None


@dataclass
class Calibration:
    threshold: float
    balanced_accuracy: float
    answer_recall: float  # answerable questions that pass the threshold
    abstain_recall: float  # unanswerable questions stopped by it
    n_answerable: int
    n_unanswerable: int


def calibrate_threshold(answerable: list[float], unanswerable: list[float]) -> Calibration:
    """Threshold (midpoint between neighbouring observed scores) with the best balanced accuracy;
    ties go to the lower threshold, which abstains less."""
    if not answerable or not unanswerable:
        raise InputError("calibration needs both answerable and unanswerable held-out questions")
    values = sorted(set(answerable) | set(unanswerable))
    candidates = [values[0] - 1e-6] + [(a + b) / 2 for a, b in zip(values, values[1:])] + [values[-1] + 1e-6]
    best: Calibration | None = None
    for t in candidates:
        ans = sum(s >= t for s in answerable) / len(answerable)
        abst = sum(s < t for s in unanswerable) / len(unanswerable)
        c = Calibration(t, (ans + abst) / 2, ans, abst, len(answerable), len(unanswerable))
        if best is None or c.balanced_accuracy > best.balanced_accuracy + 1e-12:
            best = c
    assert best is not None  # candidates is never empty
    return best


def confidences(searcher, questions: list[str], principal, k: int) -> list[float]:
    """Retrieval confidence of each question as ``searcher`` sees it (0.0 when nothing is found)."""
    out = []
    for q in questions:
        c = retrieval_confidence(searcher.search(q, principal, k=k, dense_scores=True))
        out.append(c if c is not None else 0.0)
    return out
