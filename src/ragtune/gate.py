"""The promotion gate: is a candidate index version better for the people who search?

Held-out sets a candidate is compared on (each a *signal*, live vs candidate on the same queries,
paired):

- ``labelled``: the user's own labelled queries; ``feedback``: users' newer confirmed questions;
- ``probes``: held-out queries the training did not shape — written for documents the training
  never saw, of kinds the training set does not hold (or, when it holds every kind, in other words
  than the passage's), and judged by a teacher (a cross-encoder grading the pooled top 10 of both
  versions, :mod:`ragtune.evaluate.judged`) instead of "the source chunk is the only relevant one";
- ``examples``: the user's example queries (no labels), judged by the teacher — too few to decide,
  heard as a check;
- ``synthetic``: the held-out synthetic questions of the training writer (source chunk only).

Why not the synthetic questions alone: they come from the training questions' writer, prompt and
chunk → question mapping, so a candidate that learned the writer's habits wins there while real
queries do not move (issue 25: +0.040, p = 0.011 on synthetic; −0.001 on real queries).

The verdict: the strongest signal with enough queries decides (labelled > feedback > probes >
synthetic); it must show a gain of at least ``min_effect`` whose 95% confidence interval lies
above 0, with p below ``alpha``. ``min_effect`` is in the real queries' units; a teacher's grades
compress a Δ (most pooled chunks come out "somewhat relevant"), so on a teacher-judged signal the
bar is ``min_effect × teacher_scale``. How much a judge compresses depends on the judge: over the 15
teacher-judged candidates of issue 25's design corpora (SciFact's train claims, SQuAD's dev
articles) the probes' Δ ran at 0.67 × the real queries' Δ judged by a 1500-step stage-1 reranker
(benchmarks/results/gate_judge1500.md; 1500 is the stage-1 default of ``ragtune adapt``'s reranker),
at 0.26 × by a 250-step one (gate_1000.md); hence 0.65, for the default judge and absolute grades.
The others are heard: one that is significantly worse, or the probes pointing the other way,
refuses ("signals disagree"). Every signal is listed with its size, Δ, interval, p and verdict.

Example:
    >>> from ragtune.gate import GateSettings, gate_verdict
    >>> s = {"queries": 40, "delta": 0.03, "ci": [0.01, 0.05], "p_value": 0.004}
    >>> gate_verdict({"synthetic": s, "probes": dict(s, delta=-0.01, ci=[-0.03, 0.01], p_value=0.4)},
    ...              GateSettings())["why"]
    'not better on probes (40 questions): nDCG@10 Δ -0.0100, 95% CI [-0.0300, +0.0100], p=0.4000'
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from ragtune.collection import Collection
from ragtune.data.beir import load_beir, read_qrels, read_queries
from ragtune.errors import InputError
from ragtune.evaluate.compare import compare_paired, plot_deltas
from ragtune.evaluate.ir import doc_run, per_query, score_run
from ragtune.evaluate.judged import Judge, judged_qrels
from ragtune.types import ServicePrincipal

MEASURES = ["nDCG@10", "R@100", "RR@10"]
# Real questions outrank written ones; probes outrank the training writer's own questions.
ORDER = ("labelled", "feedback", "probes", "synthetic", "examples")
CHECK_ONLY = ("examples",)  # at most 8 queries: heard, never deciding


@dataclass
class GateSettings:
    """The gate's thresholds (``AdaptConfig`` carries the same fields)."""

    alpha: float = 0.05
    measure: str = "nDCG@10"
    min_effect: float = 0.005  # the smallest gain worth a new index version (real queries' nDCG@10)
    teacher_scale: float = 0.65  # a teacher-judged Δ per real-query Δ (module docstring): scales min_effect
    min_feedback_queries: int = 20
    min_probe_queries: int = 20


class Settings(Protocol):
    alpha: float
    measure: str
    min_effect: float
    teacher_scale: float
    min_feedback_queries: int
    min_probe_queries: int


@dataclass
class VersionComparison:
    live: str
    candidate: str
    split: str
    queries: int
    metrics: dict[str, dict[str, float]]  # version -> measure -> mean
    measure: str
    delta: float
    ci: tuple[float, float]
    p_value: float
    wins_ties_losses: tuple[int, int, int]
    promote: bool  # the plain test: Δ > 0 and p < alpha (the gate's own rule is gate_verdict's)
    judged_by: str = "source chunk"
    by_kind: dict[str, dict] = field(default_factory=dict)  # query kind -> {"queries", "delta"} (probes)

    def to_dict(self) -> dict:
        return asdict(self)


def qrels_level(qrels: dict[str, dict[str, int]], chunk_ids: set[str]) -> str:
    """``"chunk"`` when the qrels name any of the collection's chunks, else ``"document"`` (labelled
    qrels on document ids, as BEIR's are): the level a version's ranking must be read at.

    >>> qrels_level({"q1": {"c7": 1}}, {"c7", "c8"}), qrels_level({"q1": {"doc-3": 1}}, {"c7"})
    ('chunk', 'document')
    """
    return "chunk" if {d for rel in qrels.values() for d in rel} & chunk_ids else "document"


def version_run(collection: Collection, version: str, queries: dict[str, str], k: int = 100,
                level: str = "chunk") -> dict[str, dict[str, float]]:
    """Ranking of every query on index ``version`` (the pipeline's query mode): of chunks, or of
    documents by their best chunk (``level="document"``, for labelled qrels on document ids)."""
    from ragtune.retrieve import Searcher

    handle = collection if collection.version == version else collection.at_version(version)
    try:
        searcher = Searcher(handle)
        principal = ServicePrincipal(acl=tuple(handle.acl_tokens()))
        out = {}
        for qid, text in queries.items():
            if level == "document":
                out[qid] = doc_run(searcher.search(text, principal, k=3 * k, with_ranks=False), k)
            else:
                hits = searcher.search(text, principal, k=k, with_ranks=False)
                out[qid] = {h.chunk_id: -float(rank) for rank, h in enumerate(hits)}
        return out
    finally:
        if handle is not collection:
            handle.close()


def by_kind(live: dict[str, float], candidate: dict[str, float], kinds: dict[str, str]) -> dict[str, dict]:
    """Mean per-query Δ of each query kind: which kinds a gain (or loss) comes from.

    >>> kinds = {"a": "claim", "b": "claim", "c": "keywords"}
    >>> by_kind({"a": 0.5, "b": 1.0, "c": 0.0}, {"a": 1.0, "b": 1.0, "c": 0.5}, kinds)
    {'claim': {'queries': 2, 'delta': 0.25}, 'keywords': {'queries': 1, 'delta': 0.5}}
    """
    groups: dict[str, list[float]] = {}
    for q in sorted(set(live) & set(candidate)):
        if kinds.get(q):
            groups.setdefault(kinds[q], []).append(candidate[q] - live[q])
    return {k: {"queries": len(d), "delta": sum(d) / len(d)} for k, d in sorted(groups.items())}


def _compared(live: str, candidate: str, split: str, qrels: dict, runs: dict, measure: str, alpha: float,
              plot: Path | None, judged_by: str, kinds: dict[str, str] | None = None) -> VersionComparison:
    metrics = {v: score_run(qrels, run, MEASURES) for v, run in runs.items()}
    pq = {v: per_query(qrels, run, [measure])[measure] for v, run in runs.items()}
    if plot is not None:
        plot_deltas(pq[live], pq[candidate], measure, f"live {live}", f"candidate {candidate}", plot)
    c = compare_paired(pq[live], pq[candidate])
    return VersionComparison(live, candidate, split, len(qrels), metrics, measure, c.delta, (c.ci_low, c.ci_high),
                             c.p_value, (c.wins, c.ties, c.losses), promote=c.delta > 0 and c.p_value < alpha,
                             judged_by=judged_by, by_kind=by_kind(pq[live], pq[candidate], kinds or {}))


def compare_versions(collection: Collection, folder: str | Path, candidate: str, split: str = "dev",
                     measure: str = "nDCG@10", alpha: float = 0.05, plot: Path | None = None) -> VersionComparison:
    """Live vs ``candidate`` on held-out questions (a BEIR folder: the synthetic set's dev split, or
    the user's labelled queries); qrels may name chunks or documents. ``plot``: per-question deltas (PNG)."""
    ds = load_beir(folder, split)
    if not ds.queries:
        raise InputError(f"{folder}: no {split} queries to compare index versions on")
    live = collection.live_version
    level = qrels_level(ds.qrels, {c["chunk_id"] for c in collection.chunks()})
    runs = {v: version_run(collection, v, ds.queries, level=level) for v in (live, candidate)}
    return _compared(live, candidate, split, ds.qrels, runs, measure, alpha, plot, "source chunk")


def compare_judged(collection: Collection, folder: str | Path, candidate: str, judge: Judge | None,
                   split: str = "dev", measure: str = "nDCG@10", alpha: float = 0.05, pool: int = 10,
                   plot: Path | None = None, grading: str = "absolute") -> VersionComparison:
    """Live vs ``candidate`` on the queries of a BEIR folder, relevance judged by ``judge`` over
    the pooled top ``pool`` of both versions (a query's qrels, where it has them, keep the top
    grade); with no judge, the folder's qrels alone. Queries with no qrels are probes with no
    source (the user's example queries): they need a judge. ``grading``: how the judge's scores
    become grades (:func:`ragtune.evaluate.judged.judged_qrels`)."""
    qrels_file = Path(folder) / "qrels" / f"{split}.tsv"
    sources = {q: set(rel) for q, rel in read_qrels(folder, split).items()} if qrels_file.exists() else {}
    records = [q for q in read_queries(folder) if not sources or q["_id"] in sources]
    queries = {q["_id"]: q["text"] for q in records}
    kinds = {q["_id"]: str(kind) for q in records if (kind := (q.get("metadata") or {}).get("type"))}
    if not queries:
        raise InputError(f"{folder}: no queries to compare index versions on")
    if judge is None and not sources:
        raise InputError(f"{folder}: queries without qrels need a judge (a reranker) to compare versions on")
    live = collection.live_version
    runs = {v: version_run(collection, v, queries) for v in (live, candidate)}
    if judge is None:
        qrels = {q: {d: 1 for d in sources[q]} for q in queries if q in sources}
        return _compared(live, candidate, split, qrels, runs, measure, alpha, plot, "source chunk", kinds)
    qrels = judged_qrels(queries, list(runs.values()), judge, sources, pool, grading)
    by = {"absolute": "teacher", "relative": "teacher, relative to the source"}.get(grading, f"teacher, {grading}")
    return _compared(live, candidate, split, qrels, runs, measure, alpha, plot, by, kinds)


def min_effect(s: dict, settings: Settings) -> float:
    """The smallest gain that counts on signal ``s``, in its own units (scaled on teacher grades).

    >>> round(min_effect({"judged_by": "teacher"}, GateSettings()), 6), min_effect({"judged_by": "source chunk"}, GateSettings())
    (0.00325, 0.005)
    """
    teacher = str(s.get("judged_by", "")).startswith("teacher")
    return settings.min_effect * (settings.teacher_scale if teacher else 1.0)


def _row(name: str, s: dict, settings: Settings) -> dict:
    lo, hi = s.get("ci") or (float("-inf"), float("inf"))
    bar = min_effect(s, settings)
    better = s["delta"] >= bar and lo > 0 and s["p_value"] < settings.alpha
    worse = s["delta"] < 0 and s["p_value"] < settings.alpha
    verdict = "better" if better else ("worse" if worse else "no difference")
    return {"name": name, "queries": s["queries"], "delta": s["delta"], "ci": [lo, hi], "p": s["p_value"],
            "verdict": verdict, "judged_by": s.get("judged_by", "source chunk"), "min_effect": bar}


def _enough(name: str, s: dict, settings: Settings) -> bool:
    if name in CHECK_ONLY:
        return False
    need = {"feedback": settings.min_feedback_queries, "probes": settings.min_probe_queries}.get(name, 2)
    return s["queries"] >= need


def gate_verdict(signals: dict[str, dict], settings: Settings) -> dict:
    """Which held-out set decides, and whether the candidate passes (see the module's docstring)."""
    if not signals:
        raise InputError("no held-out questions to judge the candidate on: keep synthetic questions on, "
                         "or give labelled queries from feedback with a test split")
    names = [n for n in ORDER if n in signals]
    ready = [n for n in names if _enough(n, signals[n], settings)]
    rows = [_row(n, signals[n], settings) for n in (ready + [n for n in names if n not in ready])]
    if not ready:
        counts = ", ".join(f"{r['queries']} {r['name']}" for r in rows)
        return {"promote": False, "decided_by": rows[0]["name"], "signals": rows,
                "why": f"too few held-out questions to decide ({counts}); need {settings.min_feedback_queries} "
                       f"feedback or {settings.min_probe_queries} probe questions"}
    deciding = rows[0]
    disagree = [r["name"] for r in rows[1:] if r["verdict"] == "worse"
                or (r["name"] == "probes" and r["delta"] < 0)]
    promote = deciding["verdict"] == "better" and not disagree
    if deciding["verdict"] != "better":
        lo, hi = deciding["ci"]
        why = (f"not better on {deciding['name']} ({deciding['queries']} questions): {settings.measure} "
               f"Δ {deciding['delta']:+.4f}, 95% CI [{lo:+.4f}, {hi:+.4f}], p={deciding['p']:.4f}")
        if 0 < deciding["delta"] < deciding["min_effect"]:
            scaled = deciding["min_effect"] != settings.min_effect
            why += f" (below the minimum effect {deciding['min_effect']:g}" + (
                f" = {settings.min_effect:g} × {settings.teacher_scale:g} on teacher grades)" if scaled else ")")
    elif disagree:
        why = f"signals disagree: better on {deciding['name']} but worse on {', '.join(disagree)}"
    else:
        why = f"better on {deciding['name']} ({deciding['queries']} questions, judged by {deciding['judged_by']})"
    return {"promote": promote, "decided_by": deciding["name"], "why": why, "signals": rows}
