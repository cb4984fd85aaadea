"""Label-free pipeline tuning: choose the retrieval settings (mode, fusion and its weights, each
retriever's depth, rerank depth) on the collection's held-out *synthetic* questions, with the
paired gate — AutoRAG's greedy search, without labelled data.

Each candidate is a set of ``query.*`` / ``reranker.depth`` overrides, scored by the reciprocal
rank (at 10) of each dev question's source chunk. The search is greedy: first mode and fusion
(with weights), then the depth of each retriever for the winner, then the rerank depth when a
reranker is configured. A setting is written to the pipeline only when it beats the current
one with p < alpha; every candidate is reported. The best setting is chosen on one half of the decision questions and confirmed, with the
paired test, on the other half.

Synthetic questions are written *from* their chunk and share its words, so they favour BM25: a
lexical-overlap bias. It is measured (the share of each question's content terms found in its
chunk; real queries overlap far less) and corrected by deciding on the keyword-poor half of the
questions — those whose overlap is at most the median — where a lexical match is not a given.

Example:
    >>> from ragtune.evaluate.tune import tune_pipeline
    >>> report = tune_pipeline(collection, "synth/default")  # doctest: +SKIP
    >>> report.chosen, report.delta, report.p_value  # doctest: +SKIP
    ({'query.bm25_weight': 2.0}, 0.041, 0.003)
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ragtune.collection import Collection
from ragtune.data.beir import load_beir, read_corpus
from ragtune.errors import InputError
from ragtune.evaluate.compare import compare_paired
from ragtune.index.sparse import Bm25Encoder
from ragtune.retrieve import Searcher
from ragtune.types import ServicePrincipal

Setting = dict[str, object]  # override key → value, e.g. {"query.mode": "bm25"}

FUSION_CANDIDATES: list[Setting] = [
    {"query.mode": "dense"}, {"query.mode": "bm25"},
    {"query.mode": "hybrid", "query.fusion": "rrf", "query.dense_weight": 1.0, "query.bm25_weight": 1.0},
    *({"query.mode": "hybrid", "query.fusion": "rrf", "query.dense_weight": d, "query.bm25_weight": b}
      for d, b in ((1.0, 2.0), (1.0, 4.0), (2.0, 1.0), (4.0, 1.0))),
    {"query.mode": "hybrid", "query.fusion": "dbsf", "query.dense_weight": 1.0, "query.bm25_weight": 1.0},
]
DEPTH_CANDIDATES = [50, 100, 200]
MIN_HALF = 5  # questions each to decide and to confirm on; fewer cannot show a paired difference
RERANK_DEPTHS = [20, 50, 100]


@dataclass
class Candidate:
    setting: Setting
    mrr: float  # on the questions the choice uses (half of the keyword-poor half)
    mrr_all: float  # on every dev question
    delta: float  # vs the current settings, decision questions
    p_value: float


@dataclass
class TuneReport:
    questions: int
    decision_questions: int  # chosen on this many, confirmed on as many others
    lexical_overlap: float  # mean share of a question's content terms found in its chunk (the BM25 bias)
    current: Setting
    current_mrr: float
    candidates: list[Candidate] = field(default_factory=list)
    chosen: Setting = field(default_factory=dict)  # empty: the current settings stay
    delta: float = 0.0  # best vs current, on the confirmation questions
    p_value: float = 1.0

    def to_dict(self) -> dict:
        return asdict(self)


def lexical_overlap(question: str, chunk: str, analyser: Bm25Encoder) -> float:
    terms = set(analyser.terms(question))
    return len(terms & set(analyser.terms(chunk))) / len(terms) if terms else 0.0


def _overrides(setting: Setting) -> list[str]:
    return [f"{k}={v}" for k, v in setting.items()]


def tune_pipeline(collection: Collection, folder: str | Path, split: str = "dev", alpha: float = 0.05,
                  on_progress: Callable[[str, int, int], None] | None = None,
                  keyword_poor: bool = True) -> TuneReport:
    """Search the settings on ``folder``'s ``split`` (synthetic questions; qrels on chunk ids).
    ``keyword_poor=False``: real users' questions (no lexical bias to correct) decide and confirm
    on halves of all of them."""
    ds = load_beir(folder, split)
    if not ds.queries:
        raise InputError(f"{folder}: no {split} questions to tune on; run `ragtune synth filter` first")
    corpus = read_corpus(folder)
    analyser = Bm25Encoder()
    overlap = {q: max((lexical_overlap(text, corpus[c]["text"], analyser) for c in ds.qrels.get(q, {}) if c in corpus),
                      default=0.0) for q, text in ds.queries.items()}
    median = statistics.median(overlap.values())
    poor = sorted(q for q, o in overlap.items() if o <= median or not keyword_poor)
    # Choosing the best of many settings on the same questions that then test it would inflate its
    # significance: choose on one half of the keyword-poor questions, confirm on the other.
    decide, confirm = set(poor[0::2]), set(poor[1::2])
    if len(confirm) < MIN_HALF:
        raise InputError(f"{folder}: {len(ds.queries)} {split} questions leave {len(confirm)} to confirm a setting on "
                         f"(at least {MIN_HALF} needed: a quarter of the {split} questions decide, a quarter confirm); "
                         "generate questions for more chunks (`ragtune synth queries --max-chunks`)")
    principal = ServicePrincipal(acl=tuple(collection.acl_tokens()))
    base = collection.pipeline
    done = [0]
    total = len(FUSION_CANDIDATES) + len(DEPTH_CANDIDATES) + (len(RERANK_DEPTHS) if base.reranker.model else 0) + 1

    def score(setting: Setting) -> dict[str, float]:
        pipeline = base.with_overrides(_overrides(setting))
        searcher = Searcher(collection)
        searcher.config = pipeline.query
        out = {}
        for q, text in ds.queries.items():
            gold = set(ds.qrels.get(q, {}))
            hits = searcher.search(text, principal, k=10, with_ranks=False, rerank=False) if not base.reranker.model \
                else _reranked(searcher, collection, pipeline, text, principal)
            out[q] = next((1.0 / r for r, h in enumerate(hits, start=1) if h.chunk_id in gold), 0.0)
        done[0] += 1
        if on_progress:
            on_progress("settings tried", done[0], total)
        return out

    current: Setting = {}
    current_scores = score(current)
    report = TuneReport(len(ds.queries), len(decide), statistics.fmean(overlap.values()), current,
                        _mean(current_scores, decide))
    best_setting, best_scores = current, current_scores

    def stage(settings: list[Setting]) -> None:
        nonlocal best_setting, best_scores
        stage_best = None
        for s in settings:
            merged = {**best_setting, **s}
            scores = score(merged)
            c = compare_paired({q: current_scores[q] for q in decide}, {q: scores[q] for q in decide})
            report.candidates.append(Candidate(merged, _mean(scores, decide), _mean(scores, set(scores)), c.delta,
                                               c.p_value))
            if stage_best is None or _mean(scores, decide) > _mean(stage_best[1], decide):
                stage_best = (merged, scores)
        if stage_best and _mean(stage_best[1], decide) > _mean(best_scores, decide):
            best_setting, best_scores = stage_best

    stage(FUSION_CANDIDATES)
    stage([{"query.candidates": d} for d in DEPTH_CANDIDATES])
    if base.reranker.model:
        stage([{"reranker.depth": d} for d in RERANK_DEPTHS])
    final = compare_paired({q: current_scores[q] for q in confirm}, {q: best_scores[q] for q in confirm})
    report.delta, report.p_value = final.delta, final.p_value
    if best_setting and final.delta > 0 and final.p_value < alpha:
        report.chosen = best_setting
    return report


def _reranked(searcher: Searcher, collection: Collection, pipeline, text: str, principal):
    depth = pipeline.reranker.depth
    hits = searcher.search(text, principal, k=max(10, depth), with_ranks=False, rerank=False)
    assert searcher.reranker is not None  # a reranker is configured
    return (searcher.reranker.rerank(text, hits[:depth]) + hits[depth:])[:10]


def _mean(scores: dict[str, float], keys: set[str]) -> float:
    return statistics.fmean(scores[q] for q in keys) if keys else 0.0


def apply_setting(collection: Collection, setting: Setting) -> None:
    """Write a tuned setting into the collection's pipeline (saved)."""
    collection.pipeline = collection.pipeline.with_overrides(_overrides(setting))
    collection.save_pipeline()
