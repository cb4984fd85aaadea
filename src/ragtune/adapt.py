"""The closed loop: synthetic queries → filters → hard negatives → train the embedder → shadow
index → evaluate against the live index → promote only if better.

The synthetic data goes to ``collections/<c>/synth/<run>/`` (the folder the ``ragtune synth``
commands use, so each step can also be re-run alone); every step records itself in
``collections/<c>/adapt/<run>/state.json``, so a stopped run picks up at the step it was in (query generation
itself resumes chunk by chunk). The decision uses held-out synthetic questions (documents the
training never saw; and the user's own labelled queries when given): the new version is
promoted only when its mean nDCG@10 is higher *and* a paired randomisation test over the
questions gives p below ``alpha``.

Example:
    >>> from ragtune.adapt import AdaptConfig, adapt
    >>> report = adapt(collection, generator, AdaptConfig(max_chunks=2000))  # doctest: +SKIP
    >>> report["decision"]  # doctest: +SKIP
    {'promote': True, 'delta': 0.041, 'p_value': 0.0002, ...}
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Literal

from ragtune.budget import BudgetPlan, measure_speeds, plan_budget
from ragtune.collection import Collection
from ragtune.data.beir import load_beir
from ragtune.errors import InputError, MissingInputError
from ragtune.evaluate.compare import compare_paired, plot_deltas
from ragtune.evaluate.ir import doc_run, per_query, score_run
from ragtune.synth.filters import FilterConfig, filter_queries
from ragtune.synth.negatives import MiningConfig, mine_negatives, training_rows
from ragtune.synth.queries import QueryGenConfig, generate_queries, select_chunks
from ragtune.synth.teacher import distillation_rows, score_with_teacher
from ragtune.train.embedder import EmbedderTrainConfig
from ragtune.train.publish import publish_embedder
from ragtune.train.reranker import RerankerTrainConfig
from ragtune.types import ServicePrincipal

Progress = Callable[[str, int, int], None]
MEASURES = ["nDCG@10", "R@100", "RR@10"]


@dataclass
class AdaptConfig:
    queries: QueryGenConfig = field(default_factory=QueryGenConfig)
    filters: FilterConfig = field(default_factory=FilterConfig)
    mining: MiningConfig = field(default_factory=MiningConfig)
    training: EmbedderTrainConfig = field(default_factory=EmbedderTrainConfig)
    num_negatives: int = 1  # hard negatives per training row (in-batch negatives come on top)
    alpha: float = 0.05
    measure: str = "nDCG@10"
    promote: bool = True  # False: build and evaluate the shadow, leave the live version alone
    labelled: Path | None = None  # the user's own labelled queries (BEIR folder): they decide when given
    labelled_split: str = "test"
    # Teacher → embedder distillation instead of plain contrastive training (GPL; Tamber et al. 2025):
    # none = MNRL on (question, chunk, mined negatives); hybrid = the pipeline's fusion scores the
    # candidates; cross-encoder = a reranker does (trained in this loop with `reranker`, or the
    # collection's configured one).
    teacher: Literal["none", "hybrid", "cross-encoder"] = "none"
    distill_negatives: int = 3
    reranker: RerankerTrainConfig | None = None  # train (and gate) a reranker in the loop
    reranker_base: str = "all-MiniLM-L6-v2"
    reranker_squad: Path | None = None  # stage 1 for the reranker (generic relevance)
    # What synthetic data and training may read: chunks visible to these ACL tokens. Public text
    # only unless told: a model serves every reader of the collection, so it must not learn text
    # some of them may not read (a promotion of a narrower scope is refused).
    scope: tuple[str, ...] = ("public",)
    # Minutes the whole run may take: the loop measures its speeds and sizes the query set to fit
    # (ragtune.budget); queries.max_chunks / per_chunk are then the plan's.
    budget_minutes: float | None = None
    # Labelled queries from users' feedback (the retrieval/<collection>/ folder of
    # `FeedbackStore.export`): the train split joins the training questions, the test split (newer
    # questions) judges the candidate beside the synthetic dev questions and decides once it holds
    # min_feedback_queries. synthetic=False trains on the feedback alone (no query generation).
    feedback: Path | None = None
    min_feedback_queries: int = 20
    synthetic: bool = True


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
    promote: bool

    def to_dict(self) -> dict:
        return asdict(self)


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


def compare_versions(collection: Collection, folder: str | Path, candidate: str, split: str = "dev",
                     measure: str = "nDCG@10", alpha: float = 0.05, plot: Path | None = None) -> VersionComparison:
    """Live vs ``candidate`` on held-out questions (a BEIR folder: the synthetic set's dev split, or
    the user's labelled queries); qrels may name chunks or documents. ``plot``: per-question deltas (PNG)."""
    ds = load_beir(folder, split)
    if not ds.queries:
        raise InputError(f"{folder}: no {split} queries to compare index versions on")
    live = collection.live_version
    chunk_ids = {c["chunk_id"] for c in collection.chunks()}
    judged = {d for rel in ds.qrels.values() for d in rel}
    level = "chunk" if judged & chunk_ids else "document"
    runs = {v: version_run(collection, v, ds.queries, level=level) for v in (live, candidate)}
    metrics = {v: score_run(ds.qrels, run, MEASURES) for v, run in runs.items()}
    pq = {v: per_query(ds.qrels, run, [measure])[measure] for v, run in runs.items()}
    if plot is not None:
        plot_deltas(pq[live], pq[candidate], measure, f"live {live}", f"candidate {candidate}", plot)
    c = compare_paired(pq[live], pq[candidate])
    return VersionComparison(live, candidate, split, len(ds.queries), metrics, measure, c.delta, (c.ci_low, c.ci_high),
                             c.p_value, (c.wins, c.ties, c.losses), promote=c.delta > 0 and c.p_value < alpha)


class _State:
    def __init__(self, folder: Path):
        self.path = folder / "state.json"
        self.data = json.loads(self.path.read_text()) if self.path.exists() else {"done": {}}

    def done(self, step: str):
        return self.data["done"].get(step)

    def mark(self, step: str, result) -> None:
        self.data["done"][step] = result
        self.path.write_text(json.dumps(self.data, indent=2, default=str))


def adapt(collection: Collection, generator, config: AdaptConfig | None = None, run_name: str = "latest",
          home: str | Path | None = None, on_progress: Progress | None = None,
          on_step: Callable[[str], None] | None = None) -> dict:
    """Run (or resume) the loop; returns the report, also written to ``report.json`` / ``report.md``."""
    from ragtune.collection.shadow import build_shadow, promote
    from ragtune.models.registry import ModelRegistry

    config = config or AdaptConfig()
    data = collection.scoped(config.scope)
    if not data.chunks():
        raise InputError(f"collection {collection.name!r} has no chunks readable with {list(config.scope)}; "
                         "adapt on another scope (e.g. --scope group:hr) or ingest public documents")
    scope = data.data_scope()
    folder = collection.dir / "synth" / run_name
    folder.mkdir(parents=True, exist_ok=True)
    run_dir = collection.dir / "adapt" / run_name
    run_dir.mkdir(parents=True, exist_ok=True)
    state = _State(run_dir)
    timings = state.data.setdefault("seconds", {})

    def step(name: str, fn):
        if (result := state.done(name)) is not None:
            return result
        if on_step:
            on_step(name)
        start = time.perf_counter()
        result = fn()
        timings[name] = round(time.perf_counter() - start, 1)
        state.mark(name, result)
        return result

    plan = None
    if config.budget_minutes is not None:
        plan = step("plan", lambda: plan_run(data, collection, generator, folder, config).to_dict())
        config = replace(config, queries=replace(config.queries, max_chunks=plan["chunks"], per_chunk=plan["per_chunk"]))
        if on_step:
            on_step(f"plan: {BudgetPlan(**plan).describe()}")
    if config.synthetic:
        step("queries", lambda: generate_queries(data, generator, folder, config.queries, on_progress))
        step("filter", lambda: filter_queries(data, folder, config.filters, on_progress).to_dict())
    elif config.feedback is None:
        raise InputError("adapting without synthetic questions needs labelled queries from feedback (feedback=...)")
    split = "train"
    if config.feedback is not None:
        step("feedback", lambda: add_feedback_queries(data, folder, config.feedback))
        split = FEEDBACK_SPLIT
    step("mine", lambda: mine_negatives(data, folder, split, config.mining, on_progress))
    registry = ModelRegistry(home, "embedder", collection.name)
    reranker = None
    if config.reranker is not None:
        reranker = step("reranker", lambda: train_gated_reranker(
            data, home, folder, config.reranker, config.reranker_base, squad=config.reranker_squad, split=split,
            apply=config.promote and collection.readable_by_all_readers(scope), on_progress=on_progress))
        if reranker.get("applied"):  # written to pipeline.yaml through `data`; this handle must agree
            collection.pipeline.reranker.model = reranker["path"]
            collection.pipeline.reranker.depth = data.pipeline.reranker.depth
            collection.pipeline.reranker.first_stage_weight = data.pipeline.reranker.first_stage_weight
    if config.teacher != "none":
        teacher_model = (reranker or {}).get("path") or collection.pipeline.reranker.model
        step("teacher", lambda: score_with_teacher(data, folder, config.teacher, split, reranker=teacher_model,
                                                   on_progress=on_progress))

    def train() -> dict:
        training = config.training
        if config.teacher == "none":
            rows = training_rows(folder, split, config.num_negatives)
        else:
            rows = distillation_rows(folder, config.teacher, split, config.distill_negatives)
            if training.loss == "mnrl":  # a teacher asks for a distillation loss; GPL's for a cross-encoder
                training = replace(training, loss="margin-mse" if config.teacher == "cross-encoder" else "kl",
                                   kl_teacher_temperature=training.kl_teacher_temperature
                                   if config.teacher == "cross-encoder" else 0.05)
        meta, result = publish_embedder(home, data, rows, training, data=str(folder))
        return {"version": meta["version"], "path": meta["path"], "rows": len(rows), "steps": result.steps,
                "train_loss": result.train_loss, "loss": training.loss}

    model = step("train", train)
    shadow = step("shadow", lambda: build_shadow(collection, model["path"], {"model_version": model["version"]},
                                                 on_progress=on_progress,
                                                 share_vectors=config.training.method == "query-adapter"))
    signals = evaluate_signals(collection, folder, shadow, config, step, run_dir)
    synthetic = signals.get("synthetic")
    if synthetic is not None:
        registry.update(model["version"], metrics={"dev": synthetic["metrics"][shadow],
                                                   "live": synthetic["metrics"][synthetic["live"]]})
    verdict = gate_verdict(signals, config)

    def decide() -> dict:
        out = {"decided_by": verdict["decided_by"], "signals": verdict["signals"]}
        if verdict["promote"] and config.promote and not collection.readable_by_all_readers(scope):
            return {**out, "promoted": False, "live": collection.live_version, "scope": scope.to_list(),
                    "why": f"trained on text not every reader of {collection.name!r} may read (scope "
                           f"{scope.to_list()}); it stays a shadow"}
        if verdict["promote"] and config.promote:
            deciding = signals[verdict["decided_by"]]
            promote(collection, shadow, reason=f"{verdict['decided_by']} {config.measure} {deciding['delta']:+.4f}, "
                                               f"p={deciding['p_value']:.4f}")
            return {**out, "promoted": True, "live": shadow}
        why = "promotion disabled" if verdict["promote"] else verdict["why"]
        return {**out, "promoted": False, "live": collection.live_version, "why": why}

    decision = step("decide", decide)
    data.close()
    report = {"collection": collection.name, "scope": scope.to_list(), "folder": str(folder), "run": str(run_dir),
              "steps": state.data["done"],
              "seconds": timings, "decision": decision, **({"plan": plan} if plan else {})}
    (run_dir / "report.json").write_text(json.dumps(report, indent=2, default=str))
    (run_dir / "report.md").write_text(report_markdown(report))
    return report


def plan_run(data: Collection, collection: Collection, generator, folder: Path, config: AdaptConfig) -> BudgetPlan:
    """Measure this machine's speeds on ``data`` (the scoped view) and plan the query set to the
    budget; the shadow re-indexes every chunk of ``collection``."""
    assert config.budget_minutes is not None
    speeds = measure_speeds(data, generator, folder, config.queries)
    eligible = len(select_chunks(data.chunks(), replace(config.queries, max_chunks=None)))
    return plan_budget(config.budget_minutes * 60, eligible, collection.store.count(), speeds,
                       epochs=config.training.epochs, negatives=config.num_negatives,
                       teacher=config.teacher != "none", reranker=config.reranker is not None)


def report_markdown(report: dict) -> str:
    from ragtune.evaluate.runs import markdown_table

    steps = report["steps"]
    decision = report["decision"]
    lines = [f"# Adaptation of `{report['collection']}`", ""]
    if report.get("plan"):
        lines += [f"Plan: {BudgetPlan(**report['plan']).describe()}; the run took "
                  f"{sum(report['seconds'].values()) / 60:.1f} min.", ""]
    if "filter" in steps:
        f = steps["filter"]
        lines.append(f"Synthetic questions: {f['candidates']} generated; removed {f['removed']['malformed']} malformed, "
                     f"{f['removed']['duplicate']} duplicates, {f['removed']['round_trip']} failing the round trip; "
                     f"kept {f['kept']} ({f['train']} train, {f['dev']} held-out dev).")
    if "feedback" in steps:
        fb = steps["feedback"]
        lines.append(f"Users' labelled questions: {fb['feedback_queries']} joined the training set "
                     f"({fb['dropped_judgements']} judgements on chunks no longer indexed dropped).")
    lines += [
        f"Hard negatives: {steps['mine']['negatives']} for {steps['mine']['queries']} questions "
        f"({steps['mine']['dropped_margin']} dropped by the margin, {steps['mine']['dropped_same_document']} from the positive's document).",
        f"Embedder {steps['train']['version']}: {steps['train']['rows']} rows, {steps['train']['steps']} steps, "
        f"loss {steps['train']['train_loss']:.4f}.", ""]
    titles = {"evaluate": "Held-out synthetic questions", "evaluate feedback": "Users' newer labelled questions (feedback test split)",
              "evaluate labelled": "Labelled queries"}
    for key, title in titles.items():
        if key not in steps:
            continue
        cmp = steps[key]
        live, cand = cmp["live"], cmp["candidate"]
        rows = [[m, cmp["metrics"][live][m], cmp["metrics"][cand][m]] for m in MEASURES]
        lines += [f"## {title} ({cmp['queries']}), live `{live}` vs candidate `{cand}`", "",
                  markdown_table(["measure", live, cand], rows), "",
                  f"{cmp['measure']}: Δ {cmp['delta']:+.4f}, 95% CI [{cmp['ci'][0]:+.4f}, {cmp['ci'][1]:+.4f}], "
                  f"p = {cmp['p_value']:.4f}, wins/ties/losses {'/'.join(map(str, cmp['wins_ties_losses']))}.", ""]
        if key == "evaluate":
            lines += ["![per-question difference](deltas.png)", ""]
    if decision.get("signals"):
        lines += ["## Gate", "", markdown_table(["held-out set", "questions", "Δ", "p", "verdict"],
                                                [[r["name"], r["queries"], f"{r['delta']:+.4f}", f"{r['p']:.4f}", r["verdict"]]
                                                 for r in decision["signals"]]), "",
                  f"Decided by: {decision['decided_by']}.", ""]
    outcome = f"promoted {decision['live']}" if decision["promoted"] else f"kept {decision['live']} ({decision.get('why', '')})"
    lines += [f"Decision: {outcome}.", "", "## Seconds per step", "",
              markdown_table(["step", "seconds"], [[k, v] for k, v in report["seconds"].items()])]
    return "\n".join(lines) + "\n"


def train_gated_reranker(collection: Collection, home: str | Path | None, folder: str | Path,
                         config: RerankerTrainConfig, base: str = "all-MiniLM-L6-v2", num_negatives: int = 3,
                         depth: int = 50, alpha: float = 0.05, squad: str | Path | None = None,
                         squad_config: RerankerTrainConfig | None = None, apply: bool = False, split: str = "train",
                         on_progress: Callable[[str, int, int], None] | None = None) -> dict:
    """Train a reranker on the collection's synthetic questions (after a generic SQuAD stage when
    ``squad`` is given), publish it, and switch the rerank stage on only if it beats no reranking
    on the held-out synthetic questions (``ragtune.evaluate.rerank.rerank_gate``)."""
    from ragtune.data.squad import load_squad
    from ragtune.evaluate.rerank import rerank_gate
    from ragtune.models.registry import ModelRegistry
    from ragtune.train.publish import publish_reranker
    from ragtune.train.reranker import squad_relevance_rows, train_reranker

    folder = Path(folder)
    if not (folder / f"negatives.{split}.jsonl").exists():
        raise MissingInputError(f"no mined negatives at {folder}; run `ragtune synth negatives -c {collection.name}` first")
    stage1: dict = {}
    if squad is not None:
        # Stage 1 (generic relevance) is the slow part: checkpointed, so an interrupted run resumes.
        registry = ModelRegistry(home, "reranker", collection.name)
        out = registry.root / "stage1" / "model"
        squad_config = squad_config or RerankerTrainConfig(max_steps=1500)
        result = train_reranker(base, squad_relevance_rows(load_squad(squad)), out, squad_config,
                                collection.pipeline.embedder.device, checkpoint_dir=registry.root / "stage1" / "checkpoints",
                                on_progress=on_progress)
        stage1 = {"data": str(squad), "steps": result.steps, "train_loss": result.train_loss, "path": str(out)}
        base = str(out)
    rows = training_rows(folder, split, num_negatives, ragged=True)
    meta, result = publish_reranker(home, collection, rows, config, base, data=str(folder))
    gate = rerank_gate(collection, folder, meta["path"], depth, alpha=alpha, on_progress=on_progress)
    ModelRegistry(home, "reranker", collection.name).update(meta["version"], gate=gate.to_dict(), stage1=stage1 or None)
    applied = apply and gate.enable
    if applied:
        collection.pipeline.reranker.model = meta["path"]
        collection.pipeline.reranker.depth = depth
        collection.pipeline.reranker.first_stage_weight = gate.first_stage_weight
        collection.save_pipeline()
    return {**meta, "rows": len(rows), "steps": result.steps, "train_loss": result.train_loss, "gate": gate.to_dict(),
            "stage1": stage1 or None, "applied": applied}


FEEDBACK_SPLIT = "train-feedback"  # the synthetic train questions plus the users' confirmed ones


def add_feedback_queries(collection: Collection, folder: str | Path, feedback: str | Path) -> dict:
    """Join the train split of users' labelled queries (``FeedbackStore.export``'s
    ``retrieval/<collection>/``) to the synthetic set in ``folder``: their questions go into
    ``queries.jsonl`` (once; provenance kept) and ``qrels/train-feedback.tsv`` holds the synthetic
    train judgements plus theirs. A judgement on a chunk no longer indexed is dropped and counted.
    Re-running it changes nothing."""
    from ragtune.data import beir
    from ragtune.synth.queries import write_corpus

    folder, feedback = Path(folder), Path(feedback)
    if not (folder / "corpus.jsonl").exists():
        write_corpus(collection.chunks(), folder)
    corpus = beir.read_corpus(folder)
    labelled = load_beir(feedback, "train")
    records = {r["_id"]: r for r in beir.read_queries(feedback)}
    known = {r["_id"] for r in beir.read_queries(folder)}
    judgements: list[tuple[str, str, int]] = []
    if (folder / "qrels" / "train.tsv").exists():
        judgements = [(q, d, rel) for q, docs in beir.read_qrels(folder, "train").items() for d, rel in docs.items()]
    synthetic = len({q for q, _, _ in judgements})
    added, dropped, new = 0, 0, []
    for qid, text in labelled.queries.items():
        chunks = [c for c in labelled.qrels[qid] if c in corpus]
        dropped += len(labelled.qrels[qid]) - len(chunks)
        if not chunks:
            continue
        judgements += [(qid, c, 1) for c in chunks]
        added += 1
        if qid not in known:
            meta = records[qid].get("metadata", {})
            new.append(beir.query_record(qid, text, {"type": "feedback", "chunk_id": chunks[0],
                                                     "doc_id": corpus[chunks[0]].get("metadata", {}).get("doc_id", ""),
                                                     "provenance": meta}))
    with (folder / "queries.jsonl").open("a") as out:
        beir.append_queries(out, new)
    beir.write_qrels(folder, FEEDBACK_SPLIT, judgements)
    return {"synthetic_queries": synthetic, "feedback_queries": added, "dropped_judgements": dropped}


def evaluate_signals(collection: Collection, folder: Path, shadow: str, config: AdaptConfig, step, run_dir: Path) -> dict:
    """Live vs the shadow on every held-out set there is: the synthetic dev questions, the
    users' newer labelled queries (feedback test split) and the user's own labelled set."""
    from ragtune.data import beir

    signals: dict[str, dict] = {}
    if config.synthetic and (folder / "qrels" / "dev.tsv").exists() and beir.read_qrels(folder, "dev"):
        signals["synthetic"] = step("evaluate", lambda: compare_versions(
            collection, folder, shadow, "dev", config.measure, config.alpha, plot=run_dir / "deltas.png").to_dict())
    if config.feedback is not None and (Path(config.feedback) / "qrels" / "test.tsv").exists() \
            and beir.read_qrels(config.feedback, "test"):
        signals["feedback"] = step("evaluate feedback", lambda: compare_versions(
            collection, config.feedback, shadow, "test", config.measure, config.alpha,
            plot=run_dir / "deltas-feedback.png").to_dict())
    if config.labelled is not None:
        signals["labelled"] = step("evaluate labelled", lambda: compare_versions(
            collection, config.labelled, shadow, config.labelled_split, config.measure, config.alpha).to_dict())
    return signals


def gate_verdict(signals: dict[str, dict], config: AdaptConfig) -> dict:
    """Which held-out set decides, and whether the candidate passes. The user's labelled set
    decides when given; else the users' feedback queries once there are ``min_feedback_queries``
    of them (real questions beat synthetic ones); else the synthetic dev questions. A candidate
    that loses significantly on any other set is refused too: the sets must not disagree."""
    if not signals:
        raise InputError("no held-out questions to judge the candidate on: keep synthetic questions on, "
                         "or give labelled queries from feedback with a test split")
    order = [n for n in ("labelled", "feedback", "synthetic") if n in signals]
    if "feedback" in signals and signals["feedback"]["queries"] < config.min_feedback_queries and len(order) > 1:
        order.remove("feedback")
        order.append("feedback")  # too few to decide; still heard as a check
    decided_by = order[0]
    if decided_by == "feedback" and signals["feedback"]["queries"] < config.min_feedback_queries:
        n = signals["feedback"]["queries"]
        return {"promote": False, "decided_by": decided_by, "signals": [
            {"name": "feedback", "queries": n, "delta": signals["feedback"]["delta"], "p": signals["feedback"]["p_value"],
             "verdict": "too few"}],
            "why": f"only {n} held-out feedback questions and no other held-out set (need {config.min_feedback_queries})"}
    rows = []
    for name in order:
        s = signals[name]
        verdict = "better" if s["promote"] else ("worse" if s["delta"] < 0 and s["p_value"] < config.alpha else "no difference")
        rows.append({"name": name, "queries": s["queries"], "delta": s["delta"], "p": s["p_value"], "verdict": verdict})
    deciding = signals[decided_by]
    losses = [r["name"] for r in rows if r["verdict"] == "worse" and r["name"] != decided_by]
    promote = bool(deciding["promote"]) and not losses
    if losses:
        why = f"signals disagree: better on {decided_by} but significantly worse on {', '.join(losses)}"
    elif not deciding["promote"]:
        why = (f"not better on {decided_by} ({deciding['queries']} questions): {config.measure} "
               f"Δ {deciding['delta']:+.4f}, p={deciding['p_value']:.4f} (alpha {config.alpha})")
    else:
        why = f"better on {decided_by} ({deciding['queries']} questions)"
    return {"promote": promote, "decided_by": decided_by, "why": why, "signals": rows}


def reader_refusal(collection: Collection, scope) -> str | None:
    """Why a reader trained within ``scope`` (None: unknown) may not become ``collection``'s
    reader, which answers every principal; None when it may."""
    if scope is None:
        return "the training data's scope is unknown (no .scope.json; pass --public-data if it is public text)"
    if not collection.readable_by_all_readers(scope):
        return f"trained on text (scope {scope.to_list()}) not every reader of {collection.name!r} may read"
    return None


def train_gated_reader(collection: Collection, home: str | Path | None, train: list, held: list, config,
                       base: str = "all-MiniLM-L6-v2", data: list[str] | None = None, scope=None,
                       apply: bool = False, eval_every: bool = False, checkpoint_dir: Path | None = None,
                       on_progress: Progress | None = None) -> dict:
    """Train a span reader on ``train`` into the collection's reader registry and gate it on
    ``held`` against the collection's current reader (the sentence baseline until one is applied),
    paired on F1. With ``apply`` a reader that passes (and whose training ``scope`` every reader
    of the collection may read) becomes the collection's reader."""
    from ragtune.answer.extractive import SpanReader, make_reader
    from ragtune.evaluate.reader import reader_gate, reading_scores
    from ragtune.models.registry import ModelRegistry
    from ragtune.train.publish import publish_reader

    current = make_reader(collection.pipeline.reader.model, collection.embedder, collection.pipeline.reader.device)
    meta, result = publish_reader(home, collection, train, config, base, data=data or [],
                                  evaluate=(lambda r: reading_scores(r, held)) if eval_every else None,
                                  checkpoint_dir=checkpoint_dir, on_progress=on_progress,
                                  scope=scope.to_list() if scope is not None else None)
    gate = reader_gate(SpanReader(meta["path"]), current, held, null_margin=collection.pipeline.reader.null_margin)
    ModelRegistry(home, "reader", collection.name).update(meta["version"], gate=gate.to_dict())
    refused = reader_refusal(collection, scope) if apply and gate.enable else None
    applied = apply and gate.enable and refused is None
    previous = collection.pipeline.reader.model
    if applied:
        collection.pipeline.reader.model = meta["path"]
        collection.save_pipeline()
    return {**meta, "questions": len(train), "windows": result.metrics.get("windows"), "steps": result.steps,
            "train_loss": result.train_loss, "seconds": result.seconds, "gate": gate.to_dict(), "applied": applied,
            "previous": previous, **({"refused": refused} if refused else {})}
