"""The flywheel: usage becomes the next model, by itself.

``run_flywheel`` looks at what changed since the collection's last run — new feedback, new
documents, time passed — and when enough has (or when forced) it exports the collection's feedback
(:meth:`ragtune.feedback.FeedbackStore.export`: labelled queries split by time, QA rows), then
runs each task:

- ``tune``: the retrieval settings (mode, fusion weights, depths; :func:`ragtune.evaluate.tune.tune_pipeline`)
  chosen on half of the users' confirmed questions and kept only if they win on the other half.
- ``embedder``: :func:`ragtune.adapt.adapt` with the users' confirmed questions beside (or,
  ``synthetic=False``, instead of) the synthetic ones; the gate hears the newer feedback questions
  and decides once there are ``min_feedback_queries`` of them.
- ``reader``: a span reader trained on the older feedback QA rows (each also over the chunks search
  returns for its question), gated against the collection's current reader on the newer ones, answered
  as the collection serves them.
- ``preferences`` (opt-in: an LLM's training, the costliest task on a CPU): DPO on the older
  "correction chosen over the answer given" pairs into a named adapter
  (``<collection>-dpo-<run>``), gated on the newer pairs (held-out preference accuracy, paired:
  :func:`ragtune.evaluate.preference.preference_gate`). Promoted means *servable* on request
  (``--adapter`` / ``model``); the collection's default answerer is left as it is, because switching
  it to a generative one is a change in answer quality this gate does not measure.

Nothing is promoted that loses on its gate. Every run appends one record to
``collections/<c>/flywheel/history.jsonl`` (trigger, each task's decision with its held-out
metrics, index version, retrieval settings and reader before and after) and writes ``flywheel/<run>/report.md``;
:func:`rollback` undoes the last run's promotions.

Example:
    >>> from ragtune.flywheel import FlywheelConfig, run_flywheel
    >>> record = run_flywheel(collection, home, FlywheelConfig(min_new_feedback=50))  # doctest: +SKIP
    >>> record["tasks"]["embedder"]["promoted"]  # doctest: +SKIP
    True
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from ragtune.adapt import AdaptConfig, Progress, adapt, train_gated_reader
from ragtune.collection import Collection
from ragtune.errors import InputError, StateError
from ragtune.feedback import FeedbackStore
from ragtune.synth.queries import QueryGenConfig
from ragtune.train.embedder import EmbedderTrainConfig
from ragtune.train.preference import PreferenceTrainConfig
from ragtune.train.reader import ReaderTrainConfig

TASKS = ("tune", "embedder", "reader", "preferences")
DEFAULT_TASKS = ("tune", "embedder", "reader")


@dataclass
class FlywheelConfig:
    # When a run is due: any one trigger, and never sooner than min_interval_minutes after the last.
    min_new_feedback: int = 20  # feedback rows on this collection's answers since the last run
    min_new_documents: int = 50  # documents indexed since the last run
    min_interval_minutes: float = 60.0
    tasks: tuple[str, ...] = DEFAULT_TASKS
    # The embedder task (ragtune.adapt): synthetic questions too (costly: an LLM writes them), or
    # the users' confirmed questions alone; budget_minutes sizes the synthetic set to fit.
    synthetic: bool = True
    max_chunks: int | None = 300
    budget_minutes: float | None = None
    embedder: EmbedderTrainConfig = field(default_factory=EmbedderTrainConfig)
    min_feedback_queries: int = 20
    test_fraction: float = 0.2  # newest share of the feedback: what each gate judges on
    # A correction labels its question with the public chunks that hold the corrected text
    # (when at most a few do): the questions the system got wrong become training data too.
    locate_corrections: bool = True
    # The reader task: a span reader on the feedback's QA rows (corrections and confirmed answers).
    reader_min_examples: int = 40
    reader_base: str | None = None  # None: continue the collection's reader when it is a trained one
    reader: ReaderTrainConfig = field(default_factory=ReaderTrainConfig)
    # Each training question also over the chunks search returns for it (answer-bearing ones labelled,
    # up to 3 others "no answer": synth.reader_contexts); 0 = the feedback's own passages only.
    reader_retrieved: int = 8
    # The reader gate answers the newer questions as the collection serves (search, k, abstention);
    # False: reads each from its feedback passage.
    reader_gate_served: bool = True
    # The preferences task: DPO on the feedback's preference pairs (prompts fitted to max_length).
    preference_min_pairs: int = 40
    preferences: PreferenceTrainConfig = field(default_factory=lambda: PreferenceTrainConfig(max_length=512, epochs=2.0))

    def __post_init__(self) -> None:
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown:
            raise InputError(f"unknown flywheel task(s) {unknown}: choose from {', '.join(TASKS)}")
        if not 0 < self.test_fraction < 1:
            raise InputError(f"test_fraction must be in (0, 1), got {self.test_fraction}")


class History:
    """``flywheel/history.jsonl``: one JSON record per run, appended (never rewritten)."""

    def __init__(self, collection: Collection):
        self.dir = collection.dir / "flywheel"
        self.path = self.dir / "history.jsonl"

    def runs(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def last_run(self) -> dict[str, Any] | None:
        """The newest record that trained something (rollbacks and skips are records too)."""
        return next((r for r in reversed(self.runs()) if r.get("kind") == "run"), None)

    def append(self, record: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps(record, default=str) + "\n")


def due(collection: Collection, feedback: FeedbackStore, config: FlywheelConfig, now: float | None = None) -> dict:
    """Whether a run is due, and why: the counts since the last run against the thresholds."""
    now = time.time() if now is None else now
    last = History(collection).last_run()
    since = last["started"] if last else None
    new_feedback = len(feedback.rows(collection.name, since))
    documents = collection.manifest.stats()["documents"]
    new_documents = documents - (last["documents"] if last else 0)
    minutes = (now - since) / 60 if since is not None else None
    reasons = []
    if new_feedback >= config.min_new_feedback:
        reasons.append(f"{new_feedback} new feedback (≥ {config.min_new_feedback})")
    if new_documents >= config.min_new_documents:
        reasons.append(f"{new_documents} new documents (≥ {config.min_new_documents})")
    waiting = minutes is not None and minutes < config.min_interval_minutes
    why_not = (f"last run {minutes:.0f} min ago (< {config.min_interval_minutes:g})" if waiting
               else "" if reasons else
               f"{new_feedback} new feedback (< {config.min_new_feedback}), "
               f"{new_documents} new documents (< {config.min_new_documents})")
    return {"due": bool(reasons) and not waiting, "reasons": reasons, "why_not": why_not,
            "new_feedback": new_feedback, "new_documents": new_documents, "documents": documents,
            "minutes_since_last": minutes}


def run_flywheel(collection: Collection, home: str | Path | None, config: FlywheelConfig | None = None,
                 generator=None, force: bool = False, on_progress: Progress | None = None,
                 on_step: Callable[[str], None] | None = None) -> dict:
    """One turn: when due (or ``force``), export the feedback, run each task behind its gate,
    append the record to the history and return it. ``generator`` writes synthetic questions
    (needed only with ``config.synthetic``)."""
    config = config or FlywheelConfig()
    history = History(collection)
    store = FeedbackStore(home)
    try:
        trigger = due(collection, store, config)
        if not trigger["due"] and not force:
            return {"kind": "skip", "ran": False, "trigger": trigger}
        started = time.time()
        run_id = time.strftime("%Y%m%d-%H%M%S", time.gmtime(started))
        run_dir = history.dir / run_id
        counts = store.export(run_dir / "feedback", config.test_fraction, collection.name,
                              locate=correction_locator(collection) if config.locate_corrections else None)
    finally:
        store.close()
    record: dict[str, Any] = {
        "kind": "run", "ran": True, "run": run_id, "started": started, "forced": force and not trigger["due"],
        "trigger": trigger, "documents": trigger["documents"], "feedback": counts,
        "index_before": collection.live_version, "reader_before": collection.pipeline.reader.model,
        "query_before": collection.pipeline.query.model_dump(),
        "config": _config_dict(config), "tasks": {}}
    for task in config.tasks:
        if on_step:
            on_step(task)
        fn = {"tune": _tune_task, "embedder": _embedder_task, "reader": _reader_task,
              "preferences": _preferences_task}[task]
        record["tasks"][task] = fn(collection, home, config, run_dir, run_id, generator, on_progress, on_step)
    record.update(finished=time.time(), index_after=collection.live_version,
                  reader_after=collection.pipeline.reader.model)
    (run_dir / "record.json").write_text(json.dumps(record, indent=2, default=str))
    (run_dir / "report.md").write_text(record_markdown(collection.name, record))
    history.append(record)
    return record


def _tune_task(collection: Collection, home, config: FlywheelConfig, run_dir: Path, run_id: str, generator,
               on_progress, on_step) -> dict:
    from ragtune.evaluate.tune import MIN_HALF, apply_setting, tune_pipeline

    labelled = run_dir / "feedback" / "retrieval" / collection.name
    if not (labelled / "qrels" / "train.tsv").exists():
        return {"ran": False, "why": "no confirmed questions in the feedback yet"}
    try:
        report = tune_pipeline(collection, labelled, "train", on_progress=on_progress)
    except InputError as e:  # too few questions to choose and confirm on (MIN_HALF each)
        return {"ran": False, "why": f"{e} (tuning needs {2 * MIN_HALF} confirmed questions)"}
    if report.chosen:
        apply_setting(collection, report.chosen)
    best = max(report.candidates, key=lambda c: c.mrr, default=None)
    why = "" if report.chosen else (f"no setting beat the current one on the held-out halves: best "
                                    f"{best.setting if best else {}} MRR@10 Δ {report.delta:+.4f}, p={report.p_value:.4f}")
    return {"ran": True, "promoted": bool(report.chosen), "why": why, "chosen": report.chosen,
            "questions": report.questions, "confirm_questions": report.decision_questions,
            "current_mrr": report.current_mrr, "delta": report.delta, "p": report.p_value}


def _embedder_task(collection: Collection, home, config: FlywheelConfig, run_dir: Path, run_id: str, generator,
                   on_progress, on_step) -> dict:
    labelled = run_dir / "feedback" / "retrieval" / collection.name
    has_feedback = (labelled / "qrels" / "train.tsv").exists()
    if not has_feedback and not config.synthetic:
        return {"ran": False, "why": "no confirmed questions in the feedback yet and synthetic questions are off"}
    adapt_config = AdaptConfig(
        tune=False,  # the flywheel's own tune task chooses the settings, on the users' questions
        queries=QueryGenConfig(max_chunks=config.max_chunks), training=config.embedder,
        feedback=labelled if has_feedback else None, min_feedback_queries=config.min_feedback_queries,
        synthetic=config.synthetic, budget_minutes=config.budget_minutes)
    try:
        report = adapt(collection, generator, adapt_config, run_name=f"flywheel-{run_id}", home=home,
                       on_progress=on_progress, on_step=on_step)
    except (InputError, StateError) as e:  # e.g. too few questions to train on: this turn does nothing
        return {"ran": False, "why": str(e)}
    decision = report["decision"]
    deciding = report["steps"].get({"synthetic": "evaluate", "feedback": "evaluate feedback",
                                    "labelled": "evaluate labelled"}[decision["decided_by"]], {})
    metrics = deciding.get("metrics", {})
    return {"ran": True, "promoted": decision["promoted"], "why": decision.get("why", ""),
            "decided_by": decision["decided_by"], "signals": decision["signals"], "measure": adapt_config.measure,
            "before": metrics.get(deciding.get("live"), {}), "candidate": metrics.get(deciding.get("candidate"), {}),
            "live": decision["live"], "report": report["run"],
            "model_version": report["steps"]["train"]["version"]}


def _reader_task(collection: Collection, home, config: FlywheelConfig, run_dir: Path, run_id: str, generator,
                 on_progress, on_step) -> dict:
    from ragtune.data.squad import load_squad

    path = run_dir / "feedback" / "squad.json"
    examples = [e for e in load_squad(path) if e.answers] if path.exists() else []
    if len(examples) < config.reader_min_examples:
        return {"ran": False, "why": f"{len(examples)} answered QA rows in the feedback (need {config.reader_min_examples})"}
    cut = len(examples) - max(1, round(len(examples) * config.test_fraction))
    train, held = examples[:cut], examples[cut:]  # oldest first: train on the past, judge on what came after
    current = collection.pipeline.reader.model
    base = config.reader_base or current or "all-MiniLM-L6-v2"
    retrieved: list = []
    if config.reader_retrieved:
        from ragtune.synth.reader_contexts import retrieved_contexts

        retrieved = retrieved_contexts(collection, train, k=config.reader_retrieved, on_progress=on_progress)[0]
    # The feedback holds passages of every reader's answers, the retrieved chunks any chunk: the
    # collection's whole scope.
    out = train_gated_reader(collection, home, train + retrieved, held, config.reader, base, data=[str(path)],
                             scope=collection.data_scope(), apply=True, on_progress=on_progress,
                             served=config.reader_gate_served)
    gate = out["gate"]
    why = out.get("refused") or ("" if out["applied"] else
                                 f"not better: F1 {gate['baseline_scores']['F1']:.3f} → {gate['candidate_scores']['F1']:.3f}, "
                                 f"p={gate['p_value']:.4f}")
    return {"ran": True, "promoted": out["applied"], "why": why, "version": out["version"], "path": out["path"],
            "base": base, "train_questions": len(train), "retrieved_examples": len(retrieved),
            "held_out_questions": len(held), "gate": gate,
            "previous": out["previous"]}


def _preferences_task(collection: Collection, home, config: FlywheelConfig, run_dir: Path, run_id: str, generator,
                      on_progress, on_step) -> dict:
    from ragtune.data.beir import iter_jsonl
    from ragtune.evaluate.preference import preference_gate
    from ragtune.train.preference import split_by_time
    from ragtune.train.publish import publish_preference_adapter

    path = run_dir / "feedback" / "preferences.jsonl"
    pairs = list(iter_jsonl(path)) if path.exists() else []
    if len(pairs) < config.preference_min_pairs:
        return {"ran": False, "why": f"{len(pairs)} preference pairs in the feedback (need {config.preference_min_pairs})"}
    train, held = split_by_time(pairs, config.test_fraction)
    name = f"{collection.name}-dpo-{run_id}"
    # the pairs' passages come from anywhere in the collection: its whole scope may use the adapter
    meta, _ = publish_preference_adapter(home, name, collection.pipeline.generator.model, train, config.preferences,
                                         data=str(path), eval_pairs=held, gate=preference_gate,
                                         scope=collection.data_scope().to_list(), collection=collection.name)
    gate = meta["gate"]
    return {"ran": True, "promoted": gate["promote"], "why": "" if gate["promote"] else gate["why"], "adapter": name,
            "train_pairs": len(train), "held_out_pairs": len(held), "gate": gate}


def correction_locator(collection: Collection, tokens: tuple[str, ...] = ("public",), max_matches: int = 3,
                       min_chars: int = 8) -> Callable[[str], dict[str, dict[str, Any]]]:
    """A correction's text → the chunks (readable with ``tokens``: what training may read) whose
    text holds it, found by BM25 and checked verbatim (case and spacing aside). A text too short
    to be specific, or held by more than ``max_matches`` chunks, labels nothing: better no
    judgement than a guessed one."""
    from ragtune.index.base import Query

    def norm(text: str) -> str:
        return " ".join(text.lower().split())

    def locate(text: str) -> dict[str, dict[str, Any]]:
        needle = norm(text)
        if len(needle) < min_chars:
            return {}
        hits = collection.store.search(Query(mode="bm25", acl_tokens=list(tokens), k=20, text=text))
        found = {h.payload["chunk_id"]: {"title": h.payload.get("title") or "", "text": h.payload["text"],
                                         "doc_id": h.payload["doc_id"]}
                 for h in hits if needle in norm(h.payload["text"])}
        return found if len(found) <= max_matches else {}

    return locate


def rollback(collection: Collection, home: str | Path | None = None, reason: str = "") -> dict:
    """Undo what the last flywheel run promoted: the index version it made live and the reader
    it applied. Recorded in the history."""
    from ragtune.collection.shadow import rollback as rollback_index

    history = History(collection)
    last = next((r for r in reversed(history.runs()) if r.get("kind") in ("run", "rollback")), None)
    if last is None or last["kind"] == "rollback":
        raise StateError(f"collection {collection.name!r}: no flywheel run to roll back"
                         + (" (the last one already was)" if last else ""))
    undone: dict[str, Any] = {}
    if last["tasks"].get("embedder", {}).get("promoted"):
        undone["index"] = {"from": collection.live_version, "to": rollback_index(collection, reason or f"flywheel rollback of {last['run']}")}
    if last["tasks"].get("tune", {}).get("promoted"):
        from ragtune.config import QueryConfig

        undone["settings"] = {"from": last["tasks"]["tune"]["chosen"], "to": "as before the run"}
        collection.pipeline.query = QueryConfig(**last["query_before"])
        collection.save_pipeline()
    if last["tasks"].get("reader", {}).get("promoted"):
        undone["reader"] = {"from": collection.pipeline.reader.model, "to": last["reader_before"]}
        collection.pipeline.reader.model = last["reader_before"]
        collection.save_pipeline()
    prefs = last["tasks"].get("preferences", {})
    if prefs.get("promoted"):
        from ragtune.models.adapters import AdapterRegistry

        # kept for inspection, no longer served (AdapterRegistry.refusal)
        AdapterRegistry(home).update(prefs["adapter"], gate={**prefs["gate"], "promote": False,
                                                              "why": f"rolled back ({reason or 'by hand'})"})
        undone["adapter"] = {"withdrawn": prefs["adapter"]}
    record = {"kind": "rollback", "run": last["run"], "started": time.time(), "undone": undone, "reason": reason,
              "index_after": collection.live_version, "reader_after": collection.pipeline.reader.model}
    history.append(record)
    return record


def quality_series(runs: list[dict]) -> list[dict]:
    """Per run, the deciding held-out measure of what is live after it (the candidate's when
    promoted, the live version's otherwise): the flywheel's quality over time."""
    out = []
    for r in runs:
        if r.get("kind") != "run":
            continue
        point: dict[str, Any] = {"run": r["run"], "started": r["started"], "index": r.get("index_after")}
        emb = r["tasks"].get("embedder", {})
        if emb.get("before"):
            measure = emb["measure"]
            point[measure + " before"] = emb["before"][measure]
            point[measure] = (emb["candidate"] if emb["promoted"] else emb["before"])[measure]
            point["decided_by"] = emb["decided_by"]
        rd = r["tasks"].get("reader", {})
        if rd.get("gate"):
            g = rd["gate"]
            point["F1"] = g["candidate_scores"]["F1"] if rd["promoted"] else g["baseline_scores"]["F1"]
        out.append(point)
    return out


def plot_history(runs: list[dict], out: Path) -> Path:
    """Quality over time (PNG): the deciding retrieval measure and the reader gate's F1 per run,
    a filled marker where the run promoted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = quality_series(runs)
    if not series:
        raise StateError("no flywheel runs to plot yet")
    fig, ax = plt.subplots(figsize=(7, 3.5))
    x = list(range(1, len(series) + 1))
    for key, label in (("nDCG@10", "retrieval nDCG@10 (deciding held-out set)"), ("F1", "reader F1 (newer feedback)")):
        pts = [(i, p[key]) for i, p in zip(x, series) if key in p]
        if pts:
            ax.plot([i for i, _ in pts], [v for _, v in pts], marker="o", label=label)
    ax.set_xticks(x, [p["run"] for p in series], rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("held-out score")
    ax.set_title("flywheel: quality after each run")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def record_markdown(collection: str, record: dict) -> str:
    t = record["trigger"]
    lines = [f"# Flywheel run {record['run']} of `{collection}`", "",
             f"Trigger: {', '.join(t['reasons']) or 'forced (' + t['why_not'] + ')'}.",
             f"Feedback exported: {json.dumps(record['feedback'].get('labelled_queries', {}).get(collection, {}))} "
             f"labelled queries, {record['feedback'].get('squad', 0)} QA rows.",
             f"Index {record['index_before']} → {record['index_after']}; reader {record['reader_before'] or 'sentence baseline'}"
             f" → {record['reader_after'] or 'sentence baseline'}.", ""]
    for name, task in record["tasks"].items():
        if not task.get("ran"):
            lines.append(f"- {name}: not run ({task['why']})")
            continue
        verdict = "promoted" if task["promoted"] else f"refused ({task['why']})"
        extra = ""
        if name == "embedder":
            extra = "; " + ", ".join(f"{s['name']} {s['queries']} q Δ {s['delta']:+.4f} p {s['p']:.4f} {s['verdict']}"
                                     for s in task["signals"]) + f"; decided by {task['decided_by']}"
        elif name == "tune":
            extra = (f"; {task['chosen'] or 'settings kept'}, MRR@10 {task['current_mrr']:.3f}, Δ {task['delta']:+.4f} "
                     f"p {task['p']:.4f} on {task['confirm_questions']} confirmation questions")
        elif name == "reader":
            g = task["gate"]
            extra = f"; {g['questions']} newer QA rows, F1 {g['baseline_scores']['F1']:.3f} → {g['candidate_scores']['F1']:.3f}"
        elif name == "preferences":
            g = task["gate"]
            extra = (f"; adapter {task['adapter']}, {task['train_pairs']} pairs, held-out preference accuracy "
                     f"{g['accuracy_before']:.3f} → {g['accuracy_after']:.3f} on {g['pairs']} newer pairs, p {g['p_value']:.4f}")
        lines.append(f"- {name}: {verdict}{extra}")
    return "\n".join(lines) + "\n"


def _config_dict(config: FlywheelConfig) -> dict:
    return asdict(replace(config))
