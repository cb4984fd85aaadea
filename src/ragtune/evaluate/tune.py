"""Label-free pipeline tuning: choose the retrieval settings (mode, fusion and its weights, each
retriever's depth, rerank depth) on the collection's held-out *synthetic* questions, with the
paired gate — AutoRAG's greedy search, without labelled data.

Each candidate is a set of ``query.*`` / ``reranker.depth`` overrides, scored by the reciprocal
rank (at 10) of each question's source chunk. The search is greedy: first mode and fusion (with
weights), then the depth of each retriever for the winner, then the rerank depth when a reranker
is configured. Its test is cross-fitted: the search runs on each half of the questions and its
choice is scored on the other half, so every question tests a choice made without it; the
setting the search picks on all questions is written to the pipeline only when those held-out
scores beat the current settings with p < alpha. Every candidate is reported.

Synthetic questions are written *from* their chunk and share its words, so they may favour BM25:
a lexical-overlap bias, measured (the share of each question's content terms found in its chunk)
and, by choice, corrected (``correction``):

- ``none`` (default): every question counts the same.
- ``keyword-poor``: decide on the half whose overlap is at most the median, for users whose queries
  are known to share few words with the documents.
- ``examples``: weight the questions so that their overlap is distributed like that of a few real
  queries the user gives (no relevance labels): the overlap of a query with the chunks the
  current settings rank first, the same measure for both, in quartile bins of the synthetic ones.

Questions come from the ``dev`` split, and also from ``train`` when no live model learned from it
(the live index is the ingested one and no reranker is configured): four times the questions,
where the dev documents alone gave a handful on a small corpus.

Example:
    >>> from ragtune.evaluate.tune import tune_pipeline
    >>> report = tune_pipeline(collection, "synth/default")  # doctest: +SKIP
    >>> report.chosen, report.delta, report.p_value  # doctest: +SKIP
    ({'query.bm25_weight': 2.0}, 0.041, 0.003)
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ragtune.collection import Collection
from ragtune.data.beir import BeirDataset, read_corpus, read_qrels, read_queries
from ragtune.errors import InputError
from ragtune.evaluate.compare import compare_paired
from ragtune.index.sparse import Bm25Encoder
from ragtune.retrieve import Searcher
from ragtune.types import ServicePrincipal

Setting = dict[str, object]  # override key → value, e.g. {"query.mode": "bm25"}

# Every fusion with the same dense:BM25 weights, 1:1 and up to 4:1 either way (AutoRAG sweeps the
# weights of each normalisation): a collection whose users search by keywords needs a BM25-heavy
# fusion of either kind, one of conceptual questions a dense-heavy one.
FUSION_WEIGHTS = ((1.0, 1.0), (1.0, 2.0), (1.0, 4.0), (2.0, 1.0), (4.0, 1.0))
FUSION_CANDIDATES: list[Setting] = [
    {"query.mode": "dense"}, {"query.mode": "bm25"},
    *(Setting({"query.mode": "hybrid", "query.fusion": f, "query.dense_weight": d, "query.bm25_weight": b})
      for f in ("rrf", "dbsf") for d, b in FUSION_WEIGHTS),
]
DEPTH_CANDIDATES = [50, 100, 200]
MIN_HALF = 5  # questions each to decide and to confirm on; fewer cannot show a paired difference
RERANK_DEPTHS = [20, 50, 100]


CORRECTIONS = ("none", "keyword-poor", "examples")


@dataclass
class Candidate:
    setting: Setting
    mrr: float  # on the questions the choice uses (weighted under ``examples``)
    mrr_all: float  # on every question, unweighted
    delta: float  # vs the current settings on the same questions (in-sample: the choice's own test is cross-fitted)
    p_value: float


@dataclass
class TuneReport:
    questions: int
    decision_questions: int  # each cross-fitted choice is made on this many and tested on as many others
    lexical_overlap: float  # mean share of a question's content terms found in its chunk (the BM25 bias)
    current: Setting
    current_mrr: float
    candidates: list[Candidate] = field(default_factory=list)
    chosen: Setting = field(default_factory=dict)  # empty: the current settings stay
    delta: float = 0.0  # the choices vs current, each on the questions it was not chosen on
    p_value: float = 1.0
    splits: list[str] = field(default_factory=list)
    correction: str = "none"
    examples_overlap: float | None = None  # the examples' mean overlap with the chunks ranked first
    fold_choices: list[Setting] = field(default_factory=list)  # what each half chose (tested on the other)

    def to_dict(self) -> dict:
        return asdict(self)


def lexical_overlap(question: str, chunk: str, analyser: Bm25Encoder) -> float:
    terms = set(analyser.terms(question))
    return len(terms & set(analyser.terms(chunk))) / len(terms) if terms else 0.0


def _overrides(setting: Setting) -> list[str]:
    return [f"{k}={v}" for k, v in setting.items()]


def unseen_splits(collection: Collection) -> tuple[str, ...]:
    """The synthetic splits no live model learned from: ``train`` too while the live index is the
    ingested one and no reranker is configured (a model trained on those questions would find
    their chunks and flatter the settings that use it)."""
    record = collection.index_versions.find(collection.live_version)
    pristine = (record is None or record.origin == "ingest") and not collection.pipeline.reranker.model
    return ("train", "dev") if pristine else ("dev",)


def example_weights(question_overlap: dict[str, float], example_overlap: list[float]) -> dict[str, float]:
    """Weights that give the questions the examples' distribution of overlap: the share of examples
    over the share of questions in each quartile bin of the questions' overlap (half an example
    added to each bin: eight examples estimate four shares only roughly)."""
    values = sorted(question_overlap.values())
    edges = [values[int(len(values) * f)] for f in (0.25, 0.5, 0.75)]

    def bin_of(o: float) -> int:
        return sum(o > e for e in edges)

    q_share = [0.0] * 4
    for o in question_overlap.values():
        q_share[bin_of(o)] += 1 / len(question_overlap)
    e_share = [0.5] * 4
    for o in example_overlap:
        e_share[bin_of(o)] += 1
    e_share = [c / sum(e_share) for c in e_share]
    return {q: e_share[bin_of(o)] / q_share[bin_of(o)] for q, o in question_overlap.items()}


def tune_pipeline(collection: Collection, folder: str | Path, split: str | tuple[str, ...] | None = None,
                  alpha: float = 0.05, on_progress: Callable[[str, int, int], None] | None = None,
                  correction: str = "none", examples: tuple[str, ...] = ()) -> TuneReport:
    """Search the settings on ``folder``'s questions (qrels on chunk ids) of ``split`` (None: the
    splits no live model learned from, :func:`unseen_splits`). ``correction`` (see the module):
    none | keyword-poor | examples (``examples``: a few real queries, no labels)."""
    if correction not in CORRECTIONS:
        raise InputError(f"correction {correction!r}: choose one of {', '.join(CORRECTIONS)}")
    if correction == "examples" and not examples:
        raise InputError("correction 'examples' needs the users' example queries (--examples FILE)")
    splits = (split,) if isinstance(split, str) else tuple(split or unseen_splits(collection))
    ds = _load_questions(Path(folder), splits)
    analyser = Bm25Encoder()
    overlap = {q: max((lexical_overlap(text, ds.corpus[c]["text"], analyser) for c in ds.qrels.get(q, {}) if c in ds.corpus),
                      default=0.0) for q, text in ds.queries.items()}
    principal = ServicePrincipal(acl=tuple(collection.acl_tokens()))
    base = collection.pipeline
    weights, examples_overlap = _weights(collection, principal, ds.queries, overlap, correction, examples, analyser)
    kept = sorted(q for q, w in weights.items() if w > 0)
    halves = (set(kept[0::2]), set(kept[1::2]))
    if len(halves[1]) < MIN_HALF:
        raise InputError(f"{folder}: {len(ds.queries)} {'+'.join(splits)} questions leave {len(halves[1])} to confirm a "
                         f"setting on (at least {MIN_HALF} needed: half decide, half confirm); generate questions "
                         "for more chunks (`ragtune synth queries --max-chunks`)")
    stages: list[list[Setting]] = [FUSION_CANDIDATES, [{"query.candidates": d} for d in DEPTH_CANDIDATES]]
    if base.reranker.model:
        stages.append([{"reranker.depth": d} for d in RERANK_DEPTHS])
    total = 1 + len(FUSION_CANDIDATES) + 3 * sum(len(st) for st in stages[1:])  # at most: later stages per search
    scored: dict[str, dict[str, float]] = {}

    def score(setting: Setting) -> dict[str, float]:
        key = json.dumps(setting, sort_keys=True)
        if key not in scored:
            scored[key] = _reciprocal_ranks(collection, base, setting, ds, principal)
            if on_progress:
                on_progress("settings tried", len(scored), total)
        return scored[key]

    def mean(scores: dict[str, float], keys: set[str]) -> float:
        return sum(weights[q] * scores[q] for q in keys) / sum(weights[q] for q in keys)

    def greedy(keys: set[str]) -> tuple[Setting, list[Setting]]:
        """The best setting on ``keys``, stage by stage; every setting it tried."""
        best: Setting = {}
        tried: list[Setting] = []
        for stage in stages:
            options = [{**best, **s} for s in stage]
            tried += options
            top = max(options, key=lambda o: mean(score(o), keys))
            if mean(score(top), keys) > mean(score(best), keys):
                best = top
        return best, tried

    current_scores = score({})
    everyone = set(kept)
    chosen, tried = greedy(everyone)
    # Choosing the best of many settings on the questions that then test it would inflate its
    # significance. Cross-fitted: choose on each half, score that choice on the other half; every
    # question then tests a choice made without it, and the procedure's out-of-sample gain is
    # tested on all of them (twice the questions of a single split). The setting written is the
    # procedure's choice on all questions.
    fold_choices = [greedy(halves[0])[0], greedy(halves[1])[0]]
    held_out = {q: score(fold_choices[1 - i])[q] for i, half in enumerate(halves) for q in half}
    report = TuneReport(len(ds.queries), len(halves[0]), statistics.fmean(overlap.values()), {},
                        mean(current_scores, everyone), splits=list(splits), correction=correction,
                        examples_overlap=statistics.fmean(examples_overlap) if examples_overlap else None,
                        fold_choices=fold_choices)
    for setting in tried:
        scores = score(setting)
        c = compare_paired({q: current_scores[q] for q in kept}, {q: scores[q] for q in kept}, weights=weights)
        report.candidates.append(Candidate(setting, mean(scores, everyone), statistics.fmean(scores.values()),
                                           c.delta, c.p_value))
    final = compare_paired({q: current_scores[q] for q in kept}, held_out, weights=weights)
    report.delta, report.p_value = final.delta, final.p_value
    if chosen and final.delta > 0 and final.p_value < alpha:
        report.chosen = chosen
    return report


def _reciprocal_ranks(collection: Collection, base, setting: Setting, ds: BeirDataset, principal) -> dict[str, float]:
    """Each question's reciprocal rank (at 10) of its source chunk under ``setting``."""
    searcher = _searcher(collection, setting)
    pipeline = base.with_overrides(_overrides(setting))
    out = {}
    for q, text in ds.queries.items():
        gold = set(ds.qrels.get(q, {}))
        hits = searcher.search(text, principal, k=10, with_ranks=False, rerank=False) if not base.reranker.model \
            else _reranked(searcher, pipeline, text, principal)
        out[q] = next((1.0 / r for r, h in enumerate(hits, start=1) if h.chunk_id in gold), 0.0)
    return out


def _load_questions(folder: Path, splits: tuple[str, ...]) -> BeirDataset:
    """The corpus, and the questions and qrels of ``splits`` together (a split with no qrels file
    adds nothing), each file read once."""
    qrels: dict[str, dict[str, int]] = {}
    for split in splits:
        if (folder / "qrels" / f"{split}.tsv").exists():
            qrels |= read_qrels(folder, split)
    if not qrels:
        raise InputError(f"{folder}: no {'/'.join(splits)} questions to tune on; run `ragtune synth filter` first")
    queries = {str(r["_id"]): r["text"] for r in read_queries(folder) if str(r["_id"]) in qrels}
    return BeirDataset(corpus=read_corpus(folder), queries=queries, qrels=qrels)


def _searcher(collection: Collection, setting: Setting) -> Searcher:
    searcher = Searcher(collection)
    searcher.config = collection.pipeline.with_overrides(_overrides(setting)).query
    return searcher


def _weights(collection: Collection, principal, queries: dict[str, str], overlap: dict[str, float], correction: str,
             examples: tuple[str, ...], analyser: Bm25Encoder) -> tuple[dict[str, float], list[float]]:
    if correction == "none":
        return {q: 1.0 for q in queries}, []
    if correction == "keyword-poor":
        median = statistics.median(overlap.values())
        return {q: 1.0 if o <= median else 0.0 for q, o in overlap.items()}, []
    # The examples have no labelled chunk: measure both on the chunks the current settings rank
    # first (the top 3), so that the two overlaps are the same measure.
    searcher = _searcher(collection, {})

    def top_overlap(text: str) -> float:
        hits = searcher.search(text, principal, k=3, with_ranks=False, rerank=False)
        return max((lexical_overlap(text, h.text, analyser) for h in hits), default=0.0)

    example_overlap = [top_overlap(e) for e in examples]
    return example_weights({q: top_overlap(t) for q, t in queries.items()}, example_overlap), example_overlap


def _reranked(searcher: Searcher, pipeline, text: str, principal):
    depth = pipeline.reranker.depth
    hits = searcher.search(text, principal, k=max(10, depth), with_ranks=False, rerank=False)
    assert searcher.reranker is not None  # a reranker is configured
    return (searcher.reranker.rerank(text, hits[:depth]) + hits[depth:])[:10]


def apply_setting(collection: Collection, setting: Setting) -> None:
    """Write a tuned setting into the collection's pipeline (saved)."""
    collection.pipeline = collection.pipeline.with_overrides(_overrides(setting))
    collection.save_pipeline()
