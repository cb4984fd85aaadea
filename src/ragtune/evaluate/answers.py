"""``ragtune eval qa -c COLLECTION``: retrieve → answer → score, on a SQuAD-format file.

Every question goes through the collection's real answer path (query strategy, hybrid search,
packing, the generator or the reader), then is scored with the SQuAD metrics. Besides the
answer scores it reports, per question:

- ``hit@1`` / ``hit@k``: was a chunk holding the gold answer span among the first 1 / k
  retrieved? (A chunk *holds* the answer if it contains the whole span or at least half of it:
  answers longer than the chunk overlap can straddle two chunks.)
- ``answer_in_context``: does a gold answer occur in the passages the model was given? The
  ceiling for any answerer on top of this retrieval.
- the answer is scored without its ``[n]`` citation markers (they are not part of the span);
- latency of every stage (rewrite, retrieve, prompt, generate or read).

The dataset's contexts are indexed into the collection first (``ragtune.ingest.datasets.index_contexts``,
as documents ``<article>-p<paragraph>``; incremental: a re-run embeds nothing new). The run directory holds ``answers.jsonl`` in the
format ``ragtune eval judge`` reads, so an LLM judge can grade the same answers.

Example:
    >>> from ragtune.evaluate.answers import evaluate_answers
    >>> run = evaluate_answers(answerer, examples)  # doctest: +SKIP
    >>> run.metrics()["answers"]["f1"], run.metrics()["answers"]["hit@5"]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Callable

from ragtune.answer.answerer import Answer, Answerer
from ragtune.answer.citations import strip_citations
from ragtune.config import ragtune_home
from ragtune.data.spans import answer_rank
from ragtune.data.squad import QAExample
from ragtune.data.text import normalize_answer
from ragtune.evaluate.qa import score_answer, score_answers
from ragtune.evaluate.runs import RunDir, markdown_table
from ragtune.types import Principal


def answer_in_context(answer: Answer, golds: list[str]) -> bool:
    context = f" {normalize_answer(' '.join(answer.passages))} "
    return any(normalize_answer(g) and f" {normalize_answer(g)} " in context for g in golds)


def evaluate_answers(answerer: Answerer, examples: list[QAExample], principal: Principal = Principal(),
                     home: str | Path | None = None, config: dict | None = None,
                     on_progress: Callable[[str, int, int], None] | None = None) -> RunDir:
    """Answer every example with ``answerer`` and score it; returns the run directory."""
    k = answerer.config.k
    run = RunDir.create(ragtune_home(home) / "runs", "qa", {
        "questions": len(examples), "k": k, "mode": answerer.mode,
        "pipeline": answerer.collection.pipeline.shown(), **(config or {})})
    records = []
    with (run.path / "answers.jsonl").open("w") as out:
        for n, ex in enumerate(examples, start=1):
            answer = answerer.ask(ex.question, principal)
            rank = answer_rank(answer.hits, ex) if ex.answers else None
            record = {"id": ex.id, "question": ex.question, "answer": answer.text,
                      "prediction": strip_citations(answer.text), "reference": ex.answers[0] if ex.answers else "",
                      "references": ex.answers, "contexts": answer.passages, "abstained": answer.abstained,
                      "abstain_reason": answer.abstain_reason, "confidence": answer.confidence, "answer_rank": rank,
                      "answer_in_context": answer_in_context(answer, ex.answers) if ex.answers else None,
                      "cited": [c.doc_id for c in answer.citations],
                      "sentence": answer.span.sentence if answer.span is not None and not answer.abstained else None,
                      "timings": answer.timings, "tokens": answer.tokens}
            out.write(json.dumps(record) + "\n")
            out.flush()  # a long run that is stopped still leaves what it answered
            records.append(record)
            if on_progress:
                on_progress("questions", n, len(examples))
    metrics, per = summarize(records, examples, k)
    run.write_metrics({"answers": metrics}, {"answers": per})
    run.write_summary(summary_markdown(metrics, k, run.id))
    return run


def summarize(records: list[dict], examples: list[QAExample], k: int) -> tuple[dict, dict]:
    scores = score_answers([r["prediction"] for r in records], [ex.answers for ex in examples])
    metrics: dict = scores.to_dict()
    metrics["abstention_rate"] = 1 - scores.answered_rate
    answerable = [r for r, ex in zip(records, examples) if ex.answers]
    per: dict[str, dict[str, float]] = {m: {} for m in ("exact_match", "f1", "subset_match", "hit@1", f"hit@{k}")}
    for r, ex in zip(records, examples):
        for m, v in score_answer(r["prediction"], ex.answers).items():
            per[m][r["id"]] = v
        if ex.answers:
            per["hit@1"][r["id"]] = float(r["answer_rank"] == 1)
            per[f"hit@{k}"][r["id"]] = float(r["answer_rank"] is not None)
    if answerable:
        metrics["hit@1"] = statistics.fmean(per["hit@1"].values())
        metrics[f"hit@{k}"] = statistics.fmean(per[f"hit@{k}"].values())
        metrics["answer_in_context"] = statistics.fmean(float(r["answer_in_context"]) for r in answerable)
    for stage in dict.fromkeys(s for r in records for s in r["timings"]):
        values = sorted(r["timings"][stage] * 1000 for r in records if stage in r["timings"])
        metrics[f"latency_ms.{stage}.p50"] = statistics.median(values)
        metrics[f"latency_ms.{stage}.mean"] = statistics.fmean(values)
        metrics[f"latency_ms.{stage}.p95"] = values[min(len(values) - 1, int(0.95 * len(values)))]
    return metrics, per


def summary_markdown(metrics: dict, k: int, run_id: str) -> str:
    names = ["exact_match", "f1", "subset_match", "abstention_rate", "abstention_precision", "abstention_recall",
             "hit@1", f"hit@{k}", "answer_in_context"]
    rows = [[m, metrics[m] if metrics.get(m) is not None else "n/a"] for m in names if m in metrics]
    stages = [s.split(".")[1] for s in metrics if s.startswith("latency_ms.") and s.endswith(".p50")]
    lat = [[s, f"{metrics[f'latency_ms.{s}.p50']:.1f}", f"{metrics[f'latency_ms.{s}.mean']:.1f}",
            f"{metrics[f'latency_ms.{s}.p95']:.1f}"] for s in stages]
    return (f"# QA evaluation (run `{run_id}`, {metrics['n']} questions)\n\n"
            + markdown_table(["metric", "value"], rows) + "\n\n## Latency per stage (ms)\n\n"
            + markdown_table(["stage", "p50", "mean", "p95"], lat) + "\n")
