"""Abstention by retrieval confidence: if even the best visible chunk is far from the question,
do not ask the model at all.

The confidence is the best dense (cosine) score among the retrieved hits. The threshold is not
a constant: :func:`calibrate_threshold` picks it from held-out questions whose answers are in the
collection (should answer) and questions whose answers are not (should abstain), maximising
balanced accuracy; the pipeline stores it as ``answer.min_retrieval_confidence``.

A span reader trained with "no answer" examples has a second signal: how far its best span's
score is above its no-answer score. A question can pass retrieval (its words are on-topic) and
still not be answered by the passages; :func:`calibrate_reader_margin` picks the reader's
``reader.null_margin`` the same way, on the held-out questions that pass the retrieval threshold.

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


# Below this many questions on either side, a threshold is noise; the reader margin stays unset.
MIN_CALIBRATION_QUESTIONS = 5


def reader_margin(answer) -> float | None:
    """How far the reader's span beat its own no-answer score on this answer (None when no span
    model read it: retrieval abstained, or the reader has no no-answer score)."""
    span = getattr(answer, "span", None)
    if span is None or span.no_answer_score is None:
        return None
    return span.score - span.no_answer_score


def calibrate_reader_margin(answerable: list[float | None], unanswerable: list[float | None],
                            minimum: int = MIN_CALIBRATION_QUESTIONS) -> tuple[float | None, Calibration | None]:
    """``reader.null_margin`` from the reader margins of held-out questions that reached the reader
    (None entries — stopped earlier — are left out): abstain when the no-answer score beats the span by
    more than the returned margin. ``(None, None)`` when fewer than ``minimum`` questions on either side
    reached the reader: too few unanswerable ones get past retrieval to say where the reader should stop.

    >>> margin, c = calibrate_reader_margin([4.0, 2.5, 6.0, 1.0, 3.0], [-9.0, -7.5, -8.0, 0.5, -11.0])
    >>> margin, c.abstain_recall
    (-0.75, 1.0)
    >>> calibrate_reader_margin([4.0, 2.5], [-9.0, None])
    (None, None)
    """
    ans = [m for m in answerable if m is not None]
    una = [m for m in unanswerable if m is not None]
    if len(ans) < minimum or len(una) < minimum:
        return None, None
    c = calibrate_threshold(ans, una)
    return -c.threshold, c  # answer when span - no_answer >= t  <=>  abstain when no_answer - span > -t


def confidences(searcher, questions: list[str], principal, k: int) -> list[float]:
    """Retrieval confidence of each question as ``searcher`` sees it (0.0 when nothing is found)."""
    out = []
    for q in questions:
        c = retrieval_confidence(searcher.search(q, principal, k=k, dense_scores=True))
        out.append(c if c is not None else 0.0)
    return out
