"""QA metrics: SQuAD exact match and token F1 (the official normalisation), subset match,
and abstention precision / recall.

Answers are compared after ``ragtune.data.text.normalize_answer`` (the official SQuAD v1.1
normalisation). Each score is the max over the gold answers, as in that script.

Example:
    >>> from ragtune.evaluate.qa import exact_match, f1, subset_match
    >>> exact_match("The Eiffel Tower!", ["eiffel tower"]), round(f1("in Paris, France", ["Paris"]), 3)
    (1.0, 0.5)
    >>> subset_match("It opened in 1889 in Paris.", ["1889"])
    1.0
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from ragtune.data.text import ABSTAIN, is_abstention, normalize_answer


def exact_match(prediction: str, golds: list[str]) -> float:
    p = normalize_answer(prediction)
    return float(any(p == normalize_answer(g) for g in golds))


def _f1(prediction: str, gold: str) -> float:
    pred_tokens, gold_tokens = normalize_answer(prediction).split(), normalize_answer(gold).split()
    common = Counter(pred_tokens) & Counter(gold_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def f1(prediction: str, golds: list[str]) -> float:
    return max((_f1(prediction, g) for g in golds), default=0.0)


def subset_match(prediction: str, golds: list[str]) -> float:
    """1 if a normalised gold answer occurs inside the normalised prediction (token-aligned)."""
    p = f" {normalize_answer(prediction)} "
    return float(any(normalize_answer(g) and f" {normalize_answer(g)} " in p for g in golds))


@dataclass
class QAScores:
    n: int
    exact_match: float
    f1: float
    subset_match: float
    abstention_precision: float | None  # of the abstentions, how many were right to abstain
    abstention_recall: float | None  # of the unanswerable questions, how many got an abstention
    answered_rate: float

    def to_dict(self) -> dict:
        return dict(vars(self))


def score_answer(prediction: str, golds: list[str]) -> dict[str, float]:
    """Per-question scores. An unanswerable question (no golds) scores 1 only for an abstention."""
    if not golds:
        ok = float(is_abstention(prediction))
        return {"exact_match": ok, "f1": ok, "subset_match": ok}
    return {"exact_match": exact_match(prediction, golds), "f1": f1(prediction, golds),
            "subset_match": subset_match(prediction, golds)}


def score_answers(predictions: list[str], golds: list[list[str]]) -> QAScores:
    """Aggregate over questions; ``golds[i] == []`` marks question i as unanswerable."""
    if len(predictions) != len(golds):
        raise ValueError(f"{len(predictions)} predictions for {len(golds)} questions")
    per = [score_answer(p, g) for p, g in zip(predictions, golds)]
    abstained = [is_abstention(p) for p in predictions]
    unanswerable = [not g for g in golds]
    n_abst, n_unans = sum(abstained), sum(unanswerable)
    right = sum(a and u for a, u in zip(abstained, unanswerable))
    mean = lambda key: sum(s[key] for s in per) / len(per) if per else 0.0  # noqa: E731
    return QAScores(
        n=len(per),
        exact_match=mean("exact_match"),
        f1=mean("f1"),
        subset_match=mean("subset_match"),
        abstention_precision=right / n_abst if n_abst else None,
        abstention_recall=right / n_unans if n_unans else None,
        answered_rate=1 - n_abst / len(per) if per else 0.0,
    )


__all__ = ["ABSTAIN", "QAScores", "exact_match", "f1", "is_abstention", "normalize_answer", "score_answer",
           "score_answers", "subset_match"]
