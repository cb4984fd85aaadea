"""Domain adaptation on SciFact without its labels, side by side in one run.

Rows (nDCG@10 / Recall@100 / MRR@10 on the *test* split, which nothing here trains or selects on):
  (a) base all-MiniLM-L6-v2;
  (b) adapted with synthetic queries only: ragtune's question writer (SmolLM2 + a LoRA adapter
      trained on SQuAD dev passages → questions) on a sample of chunks, filtered, hard
      negatives mined, embedder fine-tuned, shadow index (the `ragtune adapt` loop, promote off);
  (c) the embedder trained on SciFact's *train* qrels instead (the supervised reference);
  (d) hybrid + a cross-encoder trained from MiniLM on the synthetic pairs and negatives, on top
      of the best of the above.
Each row in dense and hybrid mode; wall-clock of every step on this machine.

Then the same loop on COVID-QA dev as an IR task (corpus = the chunks of its 60 articles, query =
each of its 802 questions, relevant = the chunk holding the answer; the SQuAD importer of the
evaluation harness): base vs adapted with synthetic questions only.

Every expensive step is cached under benchmarks/.cache/adapt-home and resumes (question generation
chunk by chunk), so the script can be stopped and re-run.

Run from the repo root:  .venv/bin/python benchmarks/adaptation.py [--chunks 3000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import CACHE, DATA, table, write_report  # noqa: E402

from ragtune.adapt import AdaptConfig, adapt  # noqa: E402
from ragtune.collection import Collection  # noqa: E402
from ragtune.collection.shadow import build_shadow  # noqa: E402
from ragtune.data.beir import load_beir  # noqa: E402
from ragtune.evaluate.compare import compare_paired  # noqa: E402
from ragtune.evaluate.ir import doc_run, per_query, score_run  # noqa: E402
from ragtune.ingest.sync import ingest  # noqa: E402
from ragtune.models.adapters import AdapterRegistry  # noqa: E402
from ragtune.models.registry import ModelRegistry  # noqa: E402
from ragtune.retrieve import Searcher  # noqa: E402
from ragtune.synth.negatives import training_rows  # noqa: E402
from ragtune.synth.queries import QueryGenConfig, qg_training_examples  # noqa: E402
from ragtune.train.embedder import EmbedderTrainConfig, train_embedder  # noqa: E402
from ragtune.train.generator import GeneratorTrainConfig, train_generator  # noqa: E402
from ragtune.train.reranker import RerankerTrainConfig, train_reranker  # noqa: E402
from ragtune.types import Acl, Principal  # noqa: E402

MEASURES = ["nDCG@10", "R@100", "RR@10"]
RERANK_DEPTH = 50
HOME = CACHE / "adapt-home"


def timed(log: dict, name: str, fn):
    """Run ``fn`` once; its result and seconds are cached in ``log`` (persisted by the caller)."""
    if name in log:
        return log[name]["result"]
    start = time.perf_counter()
    result = fn()
    log[name] = {"result": result, "seconds": round(time.perf_counter() - start, 1)}
    (HOME / "bench-steps.json").write_text(json.dumps(log, indent=2, default=str))
    return result


def evaluate(log: dict, coll: Collection, version: str, ds, mode: str, reranker: str | None = None) -> tuple[dict, dict]:
    """Scores and per-query nDCG@10 of one table row; cached in the step log so a stop loses no row."""

    def run_row() -> tuple[dict, dict]:
        handle = coll.at_version(version)
        try:
            if reranker:
                handle.pipeline.reranker.model = reranker
                handle.pipeline.reranker.depth = RERANK_DEPTH
            searcher = Searcher(handle)
            run = {q: doc_run(searcher.search(text, Principal(), mode=mode, k=300, with_ranks=False), 100)
                   for q, text in ds.queries.items()}
        finally:
            handle.close()
        return score_run(ds.qrels, run, MEASURES), per_query(ds.qrels, run, ["nDCG@10"])["nDCG@10"]

    name = f"evaluate {coll.name} {version} {mode}" + (" + rerank" if reranker else "")
    scores, pq = timed(log, name, run_row)
    return scores, pq


def reranker_dev_check(folder: Path, reranker: str, depth: int = 20) -> dict:
    """Does the reranker help on the distribution it was trained on? The loop's held-out synthetic
    dev questions, BM25 (bm25s) top-``depth`` over the sampled chunks, MRR of the source chunk
    before and after reranking. Needs no store, so it also runs while the collection is open."""
    import bm25s
    import numpy as np
    from sentence_transformers.cross_encoder import CrossEncoder

    dev = load_beir(folder, "dev")
    corpus = [json.loads(line) for line in (folder / "corpus.jsonl").read_text().splitlines() if line.strip()]
    ids = [c["_id"] for c in corpus]
    texts = [f"{c.get('title', '')} {c['text']}".strip() for c in corpus]
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
    model = CrossEncoder(reranker, device="cpu")
    before, after = [], []
    for q, text in dev.queries.items():
        found, _ = retriever.retrieve(bm25s.tokenize([text], stopwords="en", show_progress=False), k=depth,
                                      show_progress=False)
        candidates = [ids[i] for i in found[0]]
        scores = model.predict([(text, texts[i]) for i in found[0]], show_progress_bar=False)
        reranked = [candidates[i] for i in np.argsort(-scores)]
        gold = set(dev.qrels[q])
        before.append(next((1 / r for r, c in enumerate(candidates, 1) if c in gold), 0.0))
        after.append(next((1 / r for r, c in enumerate(reranked, 1) if c in gold), 0.0))
    return {"queries": len(before), "depth": depth, "mrr_bm25": float(np.mean(before)), "mrr_reranked": float(np.mean(after))}


def supervised_rows(coll: Collection) -> list[dict]:
    """SciFact *train* claims paired with every chunk of their relevant abstracts."""
    train = load_beir(DATA / "scifact", "train")
    chunks_of: dict[str, list[str]] = {}
    for c in coll.chunks():
        chunks_of.setdefault(c["doc_id"], []).append(c["search_text"])
    return [{"anchor": text, "positive": chunk} for q, text in sorted(train.queries.items())
            for doc in train.qrels[q] for chunk in chunks_of.get(doc, [])]


def run_loop(coll: Collection, chunks: int, epochs: float) -> dict:
    """The `ragtune adapt` loop with the trained question writer, promotion off (evaluated here)."""
    from ragtune.models.generator import LocalGenerator

    gen = LocalGenerator(home=HOME, adapter="qgen")
    config = AdaptConfig(queries=QueryGenConfig(max_chunks=chunks), training=EmbedderTrainConfig(epochs=epochs),
                         promote=False)
    return adapt(coll, gen, config, run_name="bench", home=HOME,
                 on_progress=lambda e, n, t: print(f"\r{e} {n}/{t}", end="", flush=True),
                 on_step=lambda s: print(f"\n{coll.name}: step {s}", flush=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chunks", type=int, default=3000, help="chunks that get a synthetic question")
    ap.add_argument("--qgen-examples", type=int, default=1000, help="SQuAD passages to train the question writer on")
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--reranker-steps", type=int, default=300, help="cap on reranker training steps (CPU time)")
    ap.add_argument("--covidqa-chunks", type=int, default=2000, help="COVID-QA chunks that get a question (0: skip)")
    args = ap.parse_args()
    HOME.mkdir(parents=True, exist_ok=True)
    log_path = HOME / "bench-steps.json"
    log = json.loads(log_path.read_text()) if log_path.exists() else {}
    ds = load_beir(DATA / "scifact", "test")

    coll = Collection.create(HOME, "scifact", exist_ok=True)
    timed(log, "index corpus", lambda: ingest(coll, DATA / "scifact", Acl(public=True)).chunks)

    coll.index_versions.ensure_live_recorded(coll.pipeline.embedder.model)
    base_version = "v1"

    adapters = AdapterRegistry(HOME)

    def train_qgen() -> dict:
        from ragtune.data.squad import load_squad

        examples = qg_training_examples(load_squad(DATA / "squad" / "dev-v1.1.json"), args.qgen_examples)
        with adapters.create("qgen", overwrite=True) as out:
            r = train_generator("SmolLM2-135M-Instruct", examples, out, GeneratorTrainConfig(epochs=1), HOME)
            adapters.describe(out, base="SmolLM2-135M-Instruct", method="lora", examples=len(examples),
                              steps=r.steps, train_loss=r.train_loss)
        return {"examples": len(examples), "steps": r.steps, "loss": r.train_loss}

    timed(log, "train question writer (LoRA, SQuAD)", train_qgen)

    report = timed(log, "adapt loop (synthetic only)", lambda: run_loop(coll, args.chunks, args.epochs))
    synth_version = report["steps"]["shadow"]

    def supervised() -> str:
        rows = supervised_rows(coll)
        registry = ModelRegistry(HOME, "embedder", "scifact")
        with registry.new_version() as (version, out):
            r = train_embedder("all-MiniLM-L6-v2", rows, out, EmbedderTrainConfig(epochs=args.epochs))
            registry.describe(out, base="all-MiniLM-L6-v2", method="full", data="scifact train qrels", rows=len(rows),
                              steps=r.steps, train_loss=r.train_loss)
        return build_shadow(coll, str(registry.path(version)), {"model_version": version, "data": "scifact train qrels"})

    sup_version = timed(log, "supervised embedder (SciFact train) + shadow", supervised)

    def reranker() -> str:
        folder = Path(report["folder"])
        rows = training_rows(folder, "train", 3, ragged=True)
        out = HOME / "models" / "reranker-bench"
        shutil.rmtree(out, ignore_errors=True)
        train_reranker("all-MiniLM-L6-v2", rows, out, RerankerTrainConfig(epochs=args.epochs, max_steps=args.reranker_steps))
        return str(out)

    rr_path = timed(log, "train reranker (synthetic pairs + negatives)", reranker)

    results, pq = {}, {}
    for label, version in (("(a) base MiniLM", base_version), ("(b) synthetic queries only", synth_version),
                           ("(c) SciFact train qrels", sup_version)):
        for mode in ("dense", "hybrid"):
            results[(label, mode)], pq[(label, mode)] = evaluate(log, coll, version, ds, mode)
    best = max(((lab, v) for lab, v in (("(a) base MiniLM", base_version), ("(b) synthetic queries only", synth_version))),
               key=lambda lv: results[(lv[0], "hybrid")]["nDCG@10"])
    rr_label = f"(d) hybrid + trained reranker on {best[0][:3]}"
    results[(rr_label, "hybrid")], pq[(rr_label, "hybrid")] = evaluate(log, coll, best[1], ds, "hybrid", rr_path)

    dev_check = timed(log, "reranker check on synthetic dev (BM25 top 20)",
                      lambda: reranker_dev_check(Path(report["folder"]), rr_path))
    rows = [[label, mode] + [m[x] for x in MEASURES] for (label, mode), m in results.items()]
    cmp_b = compare_paired(pq[("(a) base MiniLM", "dense")], pq[("(b) synthetic queries only", "dense")])
    cmp_bh = compare_paired(pq[("(a) base MiniLM", "hybrid")], pq[("(b) synthetic queries only", "hybrid")])
    cmp_d = compare_paired(pq[("(a) base MiniLM", "hybrid")], pq[(rr_label, "hybrid")])
    base_d = results[("(a) base MiniLM", "dense")]["nDCG@10"]
    steps = report["steps"]
    f = steps["filter"]
    step_rows = []
    for name, entry in log.items():
        step_rows.append([name, entry["seconds"]])
        if name == "adapt loop (synthetic only)":
            step_rows += [[f"  adapt: {k}", v] for k, v in report["seconds"].items()]
    body = f"""
SciFact: {len(ds.queries)} test queries, 5,183 abstracts → {coll.store.count()} chunks. Documents are ranked by their
best chunk. Test qrels are used only for the table below; the synthetic run chose nothing by them.

{table(["system", "mode", *MEASURES], rows)}

- synthetic only vs base, dense nDCG@10: ratio {results[("(b) synthetic queries only", "dense")]["nDCG@10"] / base_d:.3f},
  Δ {cmp_b.delta:+.4f} [{cmp_b.ci_low:+.4f}, {cmp_b.ci_high:+.4f}], p = {cmp_b.p_value:.4f};
  hybrid Δ {cmp_bh.delta:+.4f} [{cmp_bh.ci_low:+.4f}, {cmp_bh.ci_high:+.4f}], p = {cmp_bh.p_value:.4f}.
- reranker row (cross-encoder rescoring the top {RERANK_DEPTH} fused chunks) vs base hybrid: Δ {cmp_d.delta:+.4f} [{cmp_d.ci_low:+.4f}, {cmp_d.ci_high:+.4f}], p = {cmp_d.p_value:.4f}.
- The same reranker on the distribution it was trained on (the loop's {dev_check["queries"]} held-out synthetic
  dev questions, BM25 top {dev_check["depth"]} over the sampled chunks): MRR {dev_check["mrr_bm25"]:.3f} → reranked
  {dev_check["mrr_reranked"]:.3f}. A cross-encoder started from a bi-encoder (random head) and trained
  for one epoch on {steps["mine"]["with_negatives"]} synthetic questions × (1 positive + up to 3 negatives) does not learn to rank: too little data
  for a fresh head, so the rerank stage stays off by default (`reranker.model` unset).
- The loop's own held-out check (synthetic dev questions, chunk level): live nDCG@10
  {steps["evaluate"]["metrics"][steps["evaluate"]["live"]]["nDCG@10"]:.4f} → candidate
  {steps["evaluate"]["metrics"][steps["evaluate"]["candidate"]]["nDCG@10"]:.4f}, p = {steps["evaluate"]["p_value"]:.4f}
  (would promote: {steps["evaluate"]["promote"]}).
- Synthetic questions: {f["candidates"]} generated for {args.chunks} sampled chunks; removed {f["removed"]["malformed"]}
  malformed ({f["malformed_reasons"]}), {f["removed"]["duplicate"]} duplicates, {f["removed"]["round_trip"]} by the
  round trip; kept {f["kept"]} ({f["train"]} train / {f["dev"]} dev). Hard negatives: {steps["mine"]["negatives"]}.
- Reference: bge-base-en-v1.5 0.741, bge-small-en-v1.5 0.713 (dense, whole abstracts; `../shared/data/README.md`).

## Wall-clock per step (seconds, this machine)

{table(["step", "seconds"], step_rows)}
"""
    title = "Domain adaptation on SciFact and COVID-QA (no labels)"
    write_report("adaptation", title, body)  # the SciFact part survives a stop during the COVID-QA part
    if args.covidqa_chunks:
        write_report("adaptation", title, body + covidqa_part(log, args))


def covidqa_part(log: dict, args) -> str:
    from ragtune.config import PipelineConfig
    from ragtune.data.squad import load_squad, squad_to_beir
    from ragtune.ingest.chunking import Chunker
    beir_dir = HOME / "covidqa-beir"
    pipeline = PipelineConfig()
    if not (beir_dir / "corpus.jsonl").exists():
        from transformers import AutoTokenizer

        from ragtune.models.loading import resolve_model

        tokenizer = AutoTokenizer.from_pretrained(resolve_model(pipeline.embedder.model))
        squad_to_beir(load_squad(DATA / "covidqa" / "covidqa-dev.json"), beir_dir, Chunker.from_tokenizer(pipeline.chunking, tokenizer))
    ds = load_beir(beir_dir, "test")
    coll = Collection.create(HOME, "covidqa-ir", exist_ok=True)
    timed(log, "covidqa: index chunks", lambda: ingest(coll, beir_dir, Acl(public=True)).chunks)

    report = timed(log, "covidqa: adapt loop (synthetic only)", lambda: run_loop(coll, args.covidqa_chunks, args.epochs))
    shadow = report["steps"]["shadow"]
    results, pq = {}, {}
    for label, version in (("base MiniLM", "v1"), ("synthetic queries only", shadow)):
        for mode in ("dense", "hybrid"):
            results[(label, mode)], pq[(label, mode)] = evaluate(log, coll, version, ds, mode)
    rows = [[label, mode] + [m[x] for x in MEASURES] for (label, mode), m in results.items()]
    c_dense = compare_paired(pq[("base MiniLM", "dense")], pq[("synthetic queries only", "dense")])
    c_hyb = compare_paired(pq[("base MiniLM", "hybrid")], pq[("synthetic queries only", "hybrid")])
    f = report["steps"]["filter"]
    return f"""

## COVID-QA dev as an IR task ({len(ds.queries)} questions, {coll.store.count()} chunks)

{table(["system", "mode", *MEASURES], rows)}

Synthetic only vs base: dense nDCG@10 Δ {c_dense.delta:+.4f} [{c_dense.ci_low:+.4f}, {c_dense.ci_high:+.4f}],
p = {c_dense.p_value:.4f}; hybrid Δ {c_hyb.delta:+.4f} [{c_hyb.ci_low:+.4f}, {c_hyb.ci_high:+.4f}], p = {c_hyb.p_value:.4f}.
Synthetic questions: {f["candidates"]} generated, {f["kept"]} kept ({f["train"]} train / {f["dev"]} dev);
wall-clock per step: {report["seconds"]}.
"""


if __name__ == "__main__":
    main()
