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
    step("queries", lambda: generate_queries(data, generator, folder, config.queries, on_progress))
    step("filter", lambda: filter_queries(data, folder, config.filters, on_progress).to_dict())
    step("mine", lambda: mine_negatives(data, folder, "train", config.mining, on_progress))
    registry = ModelRegistry(home, "embedder", collection.name)
    reranker = None
    if config.reranker is not None:
        reranker = step("reranker", lambda: train_gated_reranker(
            data, home, folder, config.reranker, config.reranker_base, squad=config.reranker_squad,
            apply=config.promote and collection.readable_by_all_readers(scope), on_progress=on_progress))
        if reranker.get("applied"):  # written to pipeline.yaml through `data`; this handle must agree
            collection.pipeline.reranker.model = reranker["path"]
            collection.pipeline.reranker.depth = data.pipeline.reranker.depth
            collection.pipeline.reranker.first_stage_weight = data.pipeline.reranker.first_stage_weight
    if config.teacher != "none":
        teacher_model = (reranker or {}).get("path") or collection.pipeline.reranker.model
        step("teacher", lambda: score_with_teacher(data, folder, config.teacher, "train", reranker=teacher_model,
                                                   on_progress=on_progress))

    def train() -> dict:
        training = config.training
        if config.teacher == "none":
            rows = training_rows(folder, "train", config.num_negatives)
        else:
            rows = distillation_rows(folder, config.teacher, "train", config.distill_negatives)
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
    comparison = step("evaluate", lambda: compare_versions(collection, folder, shadow, "dev", config.measure,
                                                           config.alpha, plot=run_dir / "deltas.png").to_dict())
    registry.update(model["version"], metrics={"dev": comparison["metrics"][shadow], "live": comparison["metrics"][comparison["live"]]})
    deciding = comparison
    if config.labelled is not None:
        deciding = step("evaluate labelled", lambda: compare_versions(
            collection, config.labelled, shadow, config.labelled_split, config.measure, config.alpha).to_dict())

    def decide() -> dict:
        comparison = deciding
        if comparison["promote"] and config.promote and not collection.readable_by_all_readers(scope):
            return {"promoted": False, "live": collection.live_version, "scope": scope.to_list(),
                    "why": f"trained on text not every reader of {collection.name!r} may read (scope "
                           f"{scope.to_list()}); it stays a shadow"}
        if comparison["promote"] and config.promote:
            promote(collection, shadow, reason=f"{config.measure} {comparison['delta']:+.4f}, p={comparison['p_value']:.4f}")
            return {"promoted": True, "live": shadow}
        why = "promotion disabled" if comparison["promote"] else (
            f"not better: {config.measure} Δ {comparison['delta']:+.4f}, p={comparison['p_value']:.4f} (alpha {config.alpha})")
        return {"promoted": False, "live": collection.live_version, "why": why}

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
    cmp = steps["evaluate"]
    live, cand = cmp["live"], cmp["candidate"]
    rows = [[m, cmp["metrics"][live][m], cmp["metrics"][cand][m]] for m in MEASURES]
    f = steps["filter"]
    lines = [
        f"# Adaptation of `{report['collection']}`", "",
        *([f"Plan: {BudgetPlan(**report['plan']).describe()}; the run took "
           f"{sum(report['seconds'].values()) / 60:.1f} min.", ""] if report.get("plan") else []),
        f"Synthetic questions: {f['candidates']} generated; removed {f['removed']['malformed']} malformed, "
        f"{f['removed']['duplicate']} duplicates, {f['removed']['round_trip']} failing the round trip; "
        f"kept {f['kept']} ({f['train']} train, {f['dev']} held-out dev).",
        f"Hard negatives: {steps['mine']['negatives']} for {steps['mine']['queries']} questions "
        f"({steps['mine']['dropped_margin']} dropped by the margin, {steps['mine']['dropped_same_document']} from the positive's document).",
        f"Embedder {steps['train']['version']}: {steps['train']['rows']} rows, {steps['train']['steps']} steps, "
        f"loss {steps['train']['train_loss']:.4f}.", "",
        f"## Held-out synthetic questions ({cmp['queries']}), live `{live}` vs candidate `{cand}`", "",
        markdown_table(["measure", live, cand], rows), "",
        f"{cmp['measure']}: Δ {cmp['delta']:+.4f}, 95% CI [{cmp['ci'][0]:+.4f}, {cmp['ci'][1]:+.4f}], "
        f"p = {cmp['p_value']:.4f}, wins/ties/losses {'/'.join(map(str, cmp['wins_ties_losses']))}.", "",
        "![per-question difference](deltas.png)", "",
        *([f"Labelled queries ({steps['evaluate labelled']['queries']}, they decide): {steps['evaluate labelled']['measure']} "
           f"Δ {steps['evaluate labelled']['delta']:+.4f}, p = {steps['evaluate labelled']['p_value']:.4f}.", ""]
          if "evaluate labelled" in steps else []),
        f"Decision: {'promoted ' + cand if report['decision']['promoted'] else 'kept ' + live + ' (' + report['decision'].get('why', '') + ')'}.",
        "", "## Seconds per step", "", markdown_table(["step", "seconds"], [[k, v] for k, v in report["seconds"].items()]),
    ]
    return "\n".join(lines) + "\n"


def train_gated_reranker(collection: Collection, home: str | Path | None, folder: str | Path,
                         config: RerankerTrainConfig, base: str = "all-MiniLM-L6-v2", num_negatives: int = 3,
                         depth: int = 50, alpha: float = 0.05, squad: str | Path | None = None,
                         squad_config: RerankerTrainConfig | None = None, apply: bool = False,
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
    if not (folder / "negatives.train.jsonl").exists():
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
    rows = training_rows(folder, "train", num_negatives, ragged=True)
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
