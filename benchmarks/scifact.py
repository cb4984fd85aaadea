"""SciFact (BEIR), full corpus, in one run:

1. ingest throughput of `ragtune ingest` vs bare `model.encode` on the very texts it embedded;
2. nDCG@10 / Recall@100 / MRR@10 on the test split for dense, bm25 and hybrid with default
   settings, through `ragtune eval retrieval` (evaluate_retrieval), beside two baselines on the
   same data: exact MiniLM over whole abstracts (the published 0.645 setting, which also checks
   loader + metric) and bm25s (0.687 reported); hybrid vs the best single mode with a paired
   randomisation test;
3. HNSW recall@10 against exact search on the same stored chunk vectors.

Run from the repo root:  .venv/bin/python benchmarks/scifact.py
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import CACHE, DATA, Timer, table, write_report  # noqa: E402

from ragtune.collection import Collection  # noqa: E402
from ragtune.config import PipelineConfig, QueryConfig, StoreConfig  # noqa: E402
from ragtune.data.beir import load_beir  # noqa: E402
from ragtune.evaluate.compare import compare_paired  # noqa: E402
from ragtune.evaluate.ir import per_query, score_run  # noqa: E402
from ragtune.evaluate.retrieval import evaluate_retrieval  # noqa: E402
from ragtune.index.base import Query, StoredChunk  # noqa: E402
from ragtune.ingest.sync import ingest  # noqa: E402
from ragtune.types import Acl  # noqa: E402

MEASURES = ["nDCG@10", "R@100", "RR@10"]
EF = QueryConfig().hnsw_ef  # the default search beam width, as the Searcher uses it


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", default="test")
    args = ap.parse_args()
    ds = load_beir(DATA / "scifact", split=args.split)
    home = CACHE / "scifact-home"
    shutil.rmtree(home, ignore_errors=True)
    coll = Collection.create(home, "scifact", PipelineConfig())
    model = coll.embedder.model  # loaded before any timing

    # 1. throughput -----------------------------------------------------------------------------
    with Timer() as t_ingest:
        report = ingest(coll, DATA / "scifact", Acl(public=True))
    payloads = coll.store.scroll_payloads(["search_text"])
    texts = [p["search_text"] for p in payloads]
    with Timer() as t_encode:
        model.encode(texts, batch_size=coll.pipeline.embedder.batch_size, normalize_embeddings=True)
    n = len(texts)
    print(f"ingest {report.seen} docs / {n} chunks in {t_ingest.seconds:.1f}s; bare encode {t_encode.seconds:.1f}s")

    # 2. quality, through the evaluation harness (the index above is reused: nothing re-embedded)
    coll.close()
    run = evaluate_retrieval(DATA / "scifact", args.split, ["dense", "bm25", "hybrid"], home=home,
                             collection="scifact", depth=100, measures=MEASURES)
    scores = run.metrics()
    pq = run.per_query()
    qids = sorted(ds.queries)
    base_dense, base_dense_pq = exact_doc_baseline(model, ds, qids)
    base_bm25, _ = bm25s_baseline(ds, qids)
    rows = []
    for name, s, ref in [
        ("ragtune dense (chunks, MaxP, store)", scores["dense"], ""),
        ("ragtune bm25 (Qdrant text index)", scores["bm25"], ""),
        ("ragtune hybrid (RRF k=60)", scores["hybrid"], ""),
        ("baseline: exact MiniLM, whole abstracts", base_dense, "nDCG@10 0.645 published"),
        ("baseline: bm25s (stemmed, stopwords)", base_bm25, "nDCG@10 0.687 reported; Anserini 0.665"),
    ]:
        rows.append([name, s["nDCG@10"], s["R@100"], s["RR@10"], ref])
    best = max(("dense", "bm25"), key=lambda m: scores[m]["nDCG@10"])
    sig = compare_paired(pq[best]["nDCG@10"], pq["hybrid"]["nDCG@10"])
    sig_dense = compare_paired(base_dense_pq, pq["dense"]["nDCG@10"])
    coll = Collection.open(home, "scifact")

    # 3. HNSW recall ----------------------------------------------------------------------------
    recall_default, indexed_default = hnsw_recall(coll, ds, qids, payloads)
    coll.close()
    recall_forced, indexed_forced = forced_hnsw_recall(home, model, ds, qids, payloads)

    ratio = t_encode.seconds / t_ingest.seconds
    body = f"""
Data: `../shared/data/scifact` — {report.seen} abstracts, {len(qids)} `{args.split}` queries.
Default pipeline: chunks of ≤200 MiniLM tokens (32 overlap), title prefixed, {n} chunks;
documents ranked by their best chunk (MaxP); hybrid = RRF(k=60) over 100 dense + 100 BM25
candidates, all inside one Qdrant Edge query.

## Retrieval quality ({args.split} split)

{table(["system", "nDCG@10", "Recall@100", "MRR@10", "reference"], rows)}

Ratios of nDCG@10, ours / baseline on the same queries: dense {scores['dense']['nDCG@10'] / base_dense['nDCG@10']:.3f},
bm25 {scores['bm25']['nDCG@10'] / base_bm25['nDCG@10']:.3f}, hybrid / best single mode ({best})
{scores['hybrid']['nDCG@10'] / scores[best]['nDCG@10']:.3f}.

Paired randomisation tests over the {len(qids)} queries (nDCG@10):
- hybrid vs {best}: Δ {sig.delta:+.4f}, 95% CI [{sig.ci_low:+.4f}, {sig.ci_high:+.4f}], p = {sig.p_value:.4f}, hybrid wins/ties/losses {sig.wins}/{sig.ties}/{sig.losses};
- ragtune dense (chunked) vs exact MiniLM on whole abstracts: Δ {sig_dense.delta:+.4f}, p = {sig_dense.p_value:.4f}, wins/ties/losses {sig_dense.wins}/{sig_dense.ties}/{sig_dense.losses}.

Run directory of the harness: `{run.path.relative_to(home)}` under the benchmark's home
(TREC runs, per-query JSONL, recall@k plot).

## Ingestion throughput (same texts, same run)

| | seconds | chunks/s |
|---|---|---|
| `ingest()` end to end (read, chunk, embed, write, flush, optimize) | {t_ingest.seconds:.1f} | {n / t_ingest.seconds:.1f} |
| bare `model.encode` of the {n} embedded texts | {t_encode.seconds:.1f} | {n / t_encode.seconds:.1f} |

**Ingest / bare-encode throughput ratio: {ratio:.3f}** (target ≥ 0.9).

## HNSW recall@10 vs exact search (same stored vectors, {len(qids)} queries)

| index | vectors in HNSW | recall@10 |
|---|---|---|
| default settings (m=16, ef_construct=100, hnsw_ef={EF}, full-scan below 10 MB) | {indexed_default} of {n} | {recall_default:.4f} |
| HNSW forced (indexing and full-scan thresholds 1 KB), same m/ef | {indexed_forced} of {n} | {recall_forced:.4f} |
"""
    write_report("scifact", "SciFact: retrieval quality, ingest throughput, HNSW recall", body)


def exact_doc_baseline(model, ds, qids):
    ids = sorted(ds.corpus)
    docs = [(ds.corpus[d]["title"] + " " + ds.corpus[d]["text"]).strip() for d in ids]
    with Timer() as t:
        dv = model.encode(docs, batch_size=64, normalize_embeddings=True)
    qv = model.encode([ds.queries[q] for q in qids], batch_size=64, normalize_embeddings=True)
    print(f"baseline doc encode {t.seconds:.1f}s")
    sims = qv @ dv.T
    run = {}
    for i, q in enumerate(qids):
        top = np.argsort(-sims[i])[:100]
        run[q] = {ids[j]: float(sims[i, j]) for j in top}
    return score_run(ds.qrels, run, MEASURES), per_query(ds.qrels, run, ["nDCG@10"])["nDCG@10"]


def bm25s_baseline(ds, qids):
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    ids = sorted(ds.corpus)
    corpus = [(ds.corpus[d]["title"] + " " + ds.corpus[d]["text"]).strip() for d in ids]
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(corpus, stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False)
    q_tokens = bm25s.tokenize([ds.queries[q] for q in qids], stopwords="en", stemmer=stemmer, show_progress=False)
    docs, scores = retriever.retrieve(q_tokens, k=100, show_progress=False)
    run = {q: {ids[int(j)]: float(s) for j, s in zip(docs[i], scores[i])} for i, q in enumerate(qids)}
    return score_run(ds.qrels, run, MEASURES), per_query(ds.qrels, run, ["nDCG@10"])["nDCG@10"]


def exact_topk(store, model, ds, qids, payloads, k=10):
    ids = [p["point_id"] for p in payloads]
    vecs = store.vectors(ids)
    qv = model.encode([ds.queries[q] for q in qids], batch_size=64, normalize_embeddings=True)
    sims = qv @ vecs.T
    return qv, [{ids[j] for j in np.argsort(-sims[i])[:k]} for i in range(len(qids))]


def recall_at_10(store, model, ds, qids, payloads) -> float:
    qv, exact = exact_topk(store, model, ds, qids, payloads)
    got = [{h.point_id for h in store.search(Query("dense", ["public"], k=10, vector=qv[i], with_ranks=False, hnsw_ef=EF))}
           for i in range(len(qids))]
    return float(np.mean([len(g & e) / 10 for g, e in zip(got, exact)]))


def hnsw_recall(coll, ds, qids, payloads):
    store = coll.store
    return recall_at_10(store, coll.embedder.model, ds, qids, payloads), store._shard.info().indexed_vectors_count


def forced_hnsw_recall(home: Path, model, ds, qids, payloads):
    """Copy the stored vectors into a store whose segments are all HNSW-indexed and searched so."""
    from ragtune.index.edge import QdrantEdgeStore

    with Collection.open(home, "scifact") as coll:
        ids = [p["point_id"] for p in payloads]
        vecs = coll.store.vectors(ids)
    cfg = StoreConfig(full_scan_threshold_kb=1, indexing_threshold_kb=1)
    store = QdrantEdgeStore.open(home / "forced-hnsw", dim=vecs.shape[1], config=cfg)
    store.upsert([StoredChunk(i, v, "", {"acl": ["public"], "doc_id": i, "doc_hash": ""}) for i, v in zip(ids, vecs)])
    store.flush()
    store.optimize()
    indexed = store._shard.info().indexed_vectors_count
    recall = recall_at_10(store, model, ds, qids, payloads)
    store.close()
    return recall, indexed


if __name__ == "__main__":
    main()
