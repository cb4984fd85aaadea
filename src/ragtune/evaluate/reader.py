"""How well does a reader read? SQuAD exact match / F1 with the gold context, and the gate a
trained reader passes before it becomes a collection's answerer.

Reading with the gold context isolates the reader from retrieval: each question is read against
the paragraph it was asked about (answerable) or a paragraph that lacks its answer (unanswerable,
gold = abstain). ``reader_gate`` compares a trained reader with the baseline it would replace (the
sentence reader, or the reader in use) question by question on held-out questions, with the paired
randomisation test on F1; it is switched on only when it is better with p < alpha — the rule of
the embedder's and the reranker's gates. Given the collection, the gate reads as the collection
serves instead (:func:`served_per_question`): each question searched, its top-k chunks read, the
collection's abstention cuts applied — gold-context reading favours a reader that never learned to
say "not here" to a near-miss chunk, and on COVID-QA the two orders disagreed.

Example:
    >>> from ragtune.evaluate.reader import reading_scores
    >>> reading_scores(reader, held_out)  # doctest: +SKIP
    {'EM': 0.61, 'F1': 0.72, 'questions': 400}
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from ragtune.answer.extractive import Reader
from ragtune.data.squad import QAExample
from ragtune.data.text import ABSTAIN
from ragtune.errors import InputError
from ragtune.evaluate.compare import compare_paired
from ragtune.evaluate.qa import score_answer


def read_one(reader: Reader, ex: QAExample, null_margin: float | None = None) -> str:
    """The reader's answer to ``ex`` from its own context; ABSTAIN when it finds no span, or when
    its no-answer score beats the span by more than ``null_margin`` (the answerer's rule)."""
    span = reader.read(ex.question, [ex.context])
    if span is None:
        return ABSTAIN
    if null_margin is not None and span.no_answer_score is not None and span.no_answer_score - span.score > null_margin:
        return ABSTAIN
    return span.text


def per_question(reader: Reader, examples: list[QAExample], null_margin: float | None = None,
                 on_progress: Callable[[str, int, int], None] | None = None) -> dict[str, dict[str, float]]:
    return _scored(examples, lambda ex: read_one(reader, ex, null_margin), "read", on_progress)


def _scored(examples: list[QAExample], answer_of: Callable[[QAExample], str], label: str,
            on_progress: Callable[[str, int, int], None] | None) -> dict[str, dict[str, float]]:
    out = {}
    for i, ex in enumerate(examples, start=1):
        s = score_answer(answer_of(ex), ex.answers)
        out[ex.id] = {"EM": s["exact_match"], "F1": s["f1"]}
        if on_progress:
            on_progress(label, i, len(examples))
    return out


def served_per_question(collection, reader: Reader, examples: list[QAExample],
                        on_progress: Callable[[str, int, int], None] | None = None) -> dict[str, dict[str, float]]:
    """EM / F1 of ``reader`` answering ``examples`` the way the collection answers (`ask`'s extractive
    path: its search, ``answer.k``, its abstention cuts), as a principal who may read every chunk."""
    from ragtune.answer import Answerer
    from ragtune.types import ServicePrincipal

    config = collection.pipeline.answer.model_copy(update={"mode": "extractive"})
    answerer = Answerer(collection, reader=reader, config=config)
    principal = ServicePrincipal(acl=tuple(collection.acl_tokens()))

    def answer_of(ex: QAExample) -> str:
        answer = answerer.ask(ex.question, principal)
        return ABSTAIN if answer.abstained else answer.text

    return _scored(examples, answer_of, "answer", on_progress)


def reading_scores(reader: Reader, examples: list[QAExample], null_margin: float | None = None) -> dict[str, float]:
    """Mean EM and F1 (0–1) over ``examples``, each read from its own context."""
    if not examples:
        raise InputError("no questions to read")
    scores = per_question(reader, examples, null_margin)
    return {m: sum(s[m] for s in scores.values()) / len(scores) for m in ("EM", "F1")}


@dataclass
class ReaderGate:
    questions: int
    baseline: str
    candidate: str
    baseline_scores: dict[str, float]
    candidate_scores: dict[str, float]
    delta_f1: float
    ci: tuple[float, float]
    p_value: float
    ms_per_question: float  # the candidate's reading time
    enable: bool
    read: str = "gold context"  # or "served": retrieved and answered as the collection answers

    def to_dict(self) -> dict:
        return asdict(self)


def reader_gate(candidate: Reader, baseline: Reader, examples: list[QAExample], alpha: float = 0.05,
                null_margin: float | None = None,
                on_progress: Callable[[str, int, int], None] | None = None, collection=None) -> ReaderGate:
    """``candidate`` vs ``baseline`` on the same held-out questions (paired on F1), each read from its
    own context, or — given ``collection`` — retrieved and answered as the collection serves."""
    if not examples:
        raise InputError("the reader gate needs held-out questions (an --eval file or a by-article split)")
    def read(reader: Reader, margin: float | None) -> dict[str, dict[str, float]]:
        if collection is not None:  # served: the collection's own cuts apply, to both readers alike
            return served_per_question(collection, reader, examples, on_progress)
        return per_question(reader, examples, margin, on_progress)
    base = read(baseline, None)
    t = time.perf_counter()
    cand = read(candidate, null_margin)
    ms = (time.perf_counter() - t) * 1000 / len(examples)
    c = compare_paired({q: s["F1"] for q, s in base.items()}, {q: s["F1"] for q, s in cand.items()})
    mean = lambda scores, m: sum(s[m] for s in scores.values()) / len(scores)  # noqa: E731
    return ReaderGate(len(examples), baseline.name, candidate.name,
                      {m: mean(base, m) for m in ("EM", "F1")}, {m: mean(cand, m) for m in ("EM", "F1")},
                      c.delta, (c.ci_low, c.ci_high), c.p_value, ms, c.delta > 0 and c.p_value < alpha,
                      "served" if collection is not None else "gold context")
