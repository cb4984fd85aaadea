"""Performance and the keyword side, each figure a ratio measured side by side in one run.

Sections (``--only`` re-measures some and keeps the others' figures from the last
performance.json; each row names the commit it was measured at):

- ``encoder``: every encoder backend available on this machine (PyTorch float32 / bf16 where
  native, ONNX Runtime float32 / int8) on SciFact texts: texts/s ÷ float32 and top-10 overlap.
  Needs a quiet machine: speed ratios measured beside another job are not worth reporting.
- ``bm25``: ragtune's keyword side (Qdrant Edge's scored text index, and PostgreSQL + pgvector's
  BM25 in SQL) against bm25s (stemmed, stopwords, whole documents) on SciFact (test), COVID-QA
  (dev, chunked by ragtune's chunker, as every COVID-QA benchmark here) and a corpus of short
  documents assembled from SQuAD v1.1 dev (its paragraphs, a seeded sample of its questions, the
  answer's paragraph relevant). nDCG@10 with a paired randomisation test per corpus.

  Only the keyword side is measured here, so the chunks are written with one constant vector
  instead of MiniLM's (said again in the report): BM25 never reads a vector, and 11K chunks of
  MiniLM would cost ~10 min of CPU for figures nobody looks at. Chunking, the text BM25 scores
  (title above the chunk), the stores and the queries are the product's own.

Run from the repo root:  .venv/bin/python benchmarks/performance.py [--only bm25]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import CACHE, DATA, RESULTS, git_commit, table, write_report  # noqa: E402

from ragtune.collection import Collection  # noqa: E402
from ragtune.config import PipelineConfig  # noqa: E402
from ragtune.data.beir import BeirDataset, load_beir  # noqa: E402
from ragtune.evaluate.compare import compare_paired  # noqa: E402
from ragtune.evaluate.ir import doc_run, per_query, score_run  # noqa: E402
from ragtune.ingest.sync import ingest  # noqa: E402
from ragtune.retrieve import Searcher  # noqa: E402
from ragtune.types import Acl, Principal  # noqa: E402

HOME = CACHE / "performance"
DEPTH = 100


# -- corpora ------------------------------------------------------------------------------------
def _squad_beir(name: str, source: Path) -> Path:
    """A SQuAD-format file as a BEIR folder, chunked by the default pipeline's chunker (cached)."""
    from transformers import AutoTokenizer

    from ragtune.data.squad import load_squad, squad_to_beir
    from ragtune.ingest.chunking import Chunker
    from ragtune.models.loading import resolve_model

    out = HOME / f"{name}-beir"
    if not (out / "corpus.jsonl").exists():
        pipeline = PipelineConfig()
        tokenizer = AutoTokenizer.from_pretrained(resolve_model(pipeline.embedder.model))
        squad_to_beir(load_squad(source), out, Chunker.from_tokenizer(pipeline.chunking, tokenizer))
    return out


def keyword_corpora(short_queries: int) -> dict[str, tuple[Path, BeirDataset]]:
    scifact = DATA / "scifact"
    covid = _squad_beir("covidqa", DATA / "covidqa" / "covidqa-dev.json")
    squad = _squad_beir("squad-paragraphs", DATA / "squad" / "dev-v1.1.json")
    short = load_beir(squad, "test")
    rng = np.random.default_rng(0)
    keep = set(rng.choice(sorted(short.queries), size=min(short_queries, len(short.queries)), replace=False))
    short.queries = {q: t for q, t in short.queries.items() if q in keep}
    short.qrels = {q: r for q, r in short.qrels.items() if q in keep}
    return {"scifact": (scifact, load_beir(scifact, "test")), "covidqa": (covid, load_beir(covid, "test")),
            "squad-paragraphs": (squad, short)}


# -- the keyword side ---------------------------------------------------------------------------
class ConstantVectors:
    """An embedder stand-in for keyword-only measurement: the real tokenizer (the chunker counts
    with it), one constant unit vector per chunk (BM25 never reads it)."""

    def __init__(self, real):
        self.tokenizer, self.dim = real.tokenizer, real.dim

    def embed_documents(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        return np.full((len(texts), self.dim), 1 / np.sqrt(self.dim), dtype=np.float32)


def ragtune_bm25_run(source: Path, ds: BeirDataset, backend: str, name: str) -> tuple[dict, float]:
    """(doc run per query, mean ms per query) of ragtune's keyword side on ``backend``."""
    coll = Collection.create(HOME / "homes" / backend, name,
                             PipelineConfig().with_overrides([f"store.backend={backend}"]), exist_ok=True)
    try:
        if coll.store.count() == 0:
            coll.embedder = ConstantVectors(coll.embedder)
            ingest(coll, source, Acl(public=True))
        searcher = Searcher(coll)
        run, t0 = {}, time.perf_counter()
        for q in sorted(ds.queries):
            # ~3 chunks per document leaves DEPTH distinct documents after MaxP (as ragtune eval).
            run[q] = doc_run(searcher.search(ds.queries[q], Principal(), mode="bm25", k=3 * DEPTH, with_ranks=False,
                                             rerank=False), DEPTH)
        return run, 1000 * (time.perf_counter() - t0) / len(ds.queries)
    finally:
        coll.close()


def bm25s_run(ds: BeirDataset, k1: float = 1.5, b: float = 0.75) -> dict:
    """bm25s as its README runs BEIR: title + text, English stopwords, Snowball stemmer, Lucene BM25."""
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    ids = sorted(ds.corpus)
    texts = [f"{ds.corpus[d].get('title', '')} {ds.corpus[d]['text']}".strip() for d in ids]
    retriever = bm25s.BM25(k1=k1, b=b, method="lucene")
    retriever.index(bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False)
    qids = sorted(ds.queries)
    tokens = bm25s.tokenize([ds.queries[q] for q in qids], stopwords="en", stemmer=stemmer, show_progress=False)
    docs, scores = retriever.retrieve(tokens, k=min(DEPTH, len(ids)), show_progress=False)
    return {q: {ids[i]: float(s) for i, s in zip(row, srow) if s > 0} for q, row, srow in zip(qids, docs, scores)}


def bench_bm25(short_queries: int, backends: list[str]) -> dict:
    out: dict = {}
    for corpus, (source, ds) in keyword_corpora(short_queries).items():
        runs = {"bm25s": bm25s_run(ds)}
        ms: dict[str, float] = {}
        for backend in backends:
            runs[backend], ms[backend] = ragtune_bm25_run(source, ds, backend, corpus)
        scores = {name: per_query(ds.qrels, run, ["nDCG@10"])["nDCG@10"] for name, run in runs.items()}
        ndcg = {name: score_run(ds.qrels, run, ["nDCG@10"])["nDCG@10"] for name, run in runs.items()}
        row: dict = {"queries": len(ds.queries), "documents": len(ds.corpus), "nDCG@10": ndcg, "ms_per_query": ms}
        for backend in backends:
            cmp = compare_paired(scores["bm25s"], scores[backend])
            row[f"{backend}_vs_bm25s"] = {"ratio": ndcg[backend] / ndcg["bm25s"], "delta": cmp.delta, "p": cmp.p_value}
        if "pgvector" in backends and "qdrant-edge" in backends:
            row["pgvector_vs_edge_ratio"] = ndcg["pgvector"] / ndcg["qdrant-edge"]
        out[corpus] = row
        print(corpus, json.dumps(row), flush=True)
    return out


def bm25_report(r: dict) -> str:
    rows = []
    for corpus, row in r.items():
        if corpus == "measured_at_commit":
            continue
        n = row["nDCG@10"]
        for backend in [b for b in n if b != "bm25s"]:
            c = row[f"{backend}_vs_bm25s"]
            rows.append([corpus, row["queries"], backend, n[backend], n["bm25s"], c["ratio"], c["delta"], c["p"],
                         row["ms_per_query"][backend]])
    return f"""
## BM25: ragtune's keyword side vs bm25s (measured at {r.get('measured_at_commit', '?')})

bm25s: whole documents (title + text), English stopwords, Snowball stemmer, Lucene BM25 (k1 1.5,
b 0.75). ragtune: the default pipeline's chunks (title above each chunk) scored by the store's
BM25 (Qdrant Edge: Qdrant's scored text index; pgvector: BM25 in SQL over ragtune's postings),
documents ranked by their best chunk. Chunks carry one constant vector (keyword side only).
p: paired randomisation test on per-query nDCG@10 (ragtune vs bm25s).

{table(["corpus", "queries", "ragtune backend", "nDCG@10", "bm25s nDCG@10", "ratio", "Δ", "p", "ms/query"], rows)}
"""


# -- encoder backends ------------------------------------------------------------------------------
def bench_encoder(texts_n: int) -> dict:
    """Every encoder backend available here on SciFact texts (title + abstract, as chunks are
    embedded), with ``ragtune.models.encoders.measure``: texts/s ÷ float32 and top-10 overlap."""
    import random

    from ragtune.models.encoders import available, choose, measure
    from ragtune.models.loading import sentence_transformer

    ds = load_beir(DATA / "scifact", "test")
    docs = random.Random(0).sample(sorted(ds.corpus), texts_n)
    texts = [f"{ds.corpus[d].get('title', '')}\n{ds.corpus[d]['text']}" for d in docs]
    model = sentence_transformer(PipelineConfig().embedder.model, "cpu")
    measures = measure(model, texts, available("cpu"), HOME / "encoders")
    return {"texts": len(texts), "chosen": choose(measures),
            "backends": {m.backend: {"texts_per_s": m.texts_per_s, "speedup": m.speedup, "overlap": m.overlap,
                                     "error": m.error} for m in measures}}


def encoder_report(r: dict) -> str:
    rows = [[b, m["texts_per_s"], m["speedup"], m["overlap"], m["error"] or ""] for b, m in r["backends"].items()]
    return f"""
## Encoder backends (measured at {r.get('measured_at_commit', '?')})

{r['texts']} SciFact texts (title + abstract), MiniLM-L6, batch 32, one warm-up batch each; overlap:
mean top-10 neighbour overlap with PyTorch float32 (64 probes, each a text's first 12 words).
Chosen (fastest with overlap ≥ 0.99): **{r['chosen']}**.

{table(["backend", "texts/s", "÷ float32", "top-10 overlap", "error"], rows)}
"""


# -- ingest vs the bare encoder, and the reranker's cost ---------------------------------------------
def _scifact_collection(backend: str) -> tuple[Collection, float, int]:
    """SciFact (5,183 abstracts) ingested by the default pipeline with the embedder on ``backend``
    (fixed, so no measurement runs inside the timed ingest); (collection, seconds, chunks)."""
    name = f"scifact-{backend}"
    home = HOME / "homes" / "ingest"
    shutil.rmtree(home / "collections" / name, ignore_errors=True)  # timed from empty every run
    coll = Collection.create(home, name, PipelineConfig().with_overrides([f"embedder.backend={backend}"]))
    coll.embedder.embed_documents(["warm-up"])  # the model load (and any export) is not ingest
    t0 = time.perf_counter()
    report = ingest(coll, DATA / "scifact", Acl(public=True))
    return coll, time.perf_counter() - t0, report.chunks


def bench_ingest(backend: str) -> dict:
    """Chunks/s of a full ingest (read, chunk, embed, write the index) ÷ texts/s of the bare
    encoder on the very texts ingest embedded, same backend, same process."""
    coll, seconds, chunks = _scifact_collection(backend)
    try:
        texts = [p["search_text"] for p in coll.store.scroll_payloads(["search_text"]) if p.get("search_text")]
        t0 = time.perf_counter()
        coll.embedder.embed_documents(texts)
        bare = time.perf_counter() - t0
    finally:
        coll.close()
    return {"backend": backend, "chunks": chunks, "ingest_s": seconds, "encoder_s": bare,
            "ingest_chunks_per_s": chunks / seconds, "encoder_texts_per_s": len(texts) / bare,
            "ratio": (chunks / seconds) / (len(texts) / bare)}


def ingest_report(r: dict) -> str:
    return f"""
## Ingest ÷ the bare encoder (measured at {r.get('measured_at_commit', '?')})

SciFact's 5,183 abstracts ingested from empty by the default pipeline (read, chunk, embed, write
Qdrant Edge), embedder on **{r['backend']}**; then the same {r['chunks']} chunk texts through the bare
encoder (same backend, same batch size). Ratio 1.0 would mean ingest costs nothing beyond encoding.

{table(["chunks", "ingest s", "ingest chunks/s", "bare encoder s", "encoder texts/s", "ingest ÷ encoder"],
       [[r['chunks'], r['ingest_s'], r['ingest_chunks_per_s'], r['encoder_s'], r['encoder_texts_per_s'], r['ratio']]])}
"""


def bench_reranker(queries_n: int, depths: tuple[int, ...] = (20, 50)) -> dict:
    """ms/query of the rerank stage at each depth, float32 vs bf16 autocast (where native), on
    SciFact test claims over their hybrid candidates. The cross-encoder is MiniLM-L6 with a fresh
    one-logit head (what ragtune's reranker training starts from): the cost is the trained one's;
    bf16 fidelity is its score correlation and top-10 overlap with float32 on the same pairs."""
    from ragtune.config import RerankerConfig
    from ragtune.models.loading import native_bf16, resolve_model
    from ragtune.retrieve.rerank import CrossEncoderReranker

    home = HOME / "homes" / "ingest"
    coll = Collection.open(home, "scifact-torch-bf16") if (home / "collections" / "scifact-torch-bf16").exists() \
        else _scifact_collection("torch")[0]
    try:
        ds = load_beir(DATA / "scifact", "test")
        qids = sorted(ds.queries)[:queries_n]
        searcher = Searcher(coll)
        cands = {q: searcher.search(ds.queries[q], Principal(), k=max(depths), rerank=False) for q in qids}
    finally:
        coll.close()
    folder = HOME / "fresh-cross-encoder"
    if not (folder / "config.json").exists():
        from sentence_transformers import CrossEncoder

        CrossEncoder(resolve_model(PipelineConfig().embedder.model), num_labels=1, device="cpu").save(str(folder))
    precisions = ["fp32"] + (["bf16"] if native_bf16("cpu") else [])
    out: dict = {"queries": len(qids), "precisions": precisions, "depths": {}}
    for depth in depths:
        row: dict = {}
        scores: dict[str, list] = {}
        for precision in precisions:
            cfg = RerankerConfig(model=str(folder), precision=precision, depth=depth)
            rr = CrossEncoderReranker(cfg, "cpu")
            rr.scores(ds.queries[qids[0]], cands[qids[0]][:depth])  # warm-up
            t0 = time.perf_counter()
            scores[precision] = [rr.scores(ds.queries[q], cands[q][:depth]) for q in qids]
            row[precision] = {"ms_per_query": 1000 * (time.perf_counter() - t0) / len(qids)}
        if "bf16" in scores:
            a = np.concatenate([np.asarray(x) for x in scores["fp32"]])
            b = np.concatenate([np.asarray(x) for x in scores["bf16"]])
            top = [len(set(np.argsort(-np.asarray(x))[:10]) & set(np.argsort(-np.asarray(y))[:10])) / min(10, len(x))
                   for x, y in zip(scores["fp32"], scores["bf16"])]
            row["bf16"] |= {"speedup": row["fp32"]["ms_per_query"] / row["bf16"]["ms_per_query"],
                            "pearson": float(np.corrcoef(a, b)[0, 1]), "top10_overlap": float(np.mean(top))}
        out["depths"][str(depth)] = row
        print("reranker", depth, json.dumps(row), flush=True)
    return out


def reranker_report(r: dict) -> str:
    rows = []
    for depth, row in r["depths"].items():
        for precision in r["precisions"]:
            m = row[precision]
            rows.append([depth, precision, m["ms_per_query"], m.get("speedup", 1.0), m.get("pearson", 1.0),
                         m.get("top10_overlap", 1.0)])
    return f"""
## Reranker cost per query (measured at {r.get('measured_at_commit', '?')})

{r['queries']} SciFact test claims, each with its top hybrid candidates (title > chunk text, as
served), one query at a time, after a warm-up. Cross-encoder: MiniLM-L6 with a fresh one-logit
head, the starting point of ragtune's reranker training (its cost is the trained reranker's; the
offline environment has no pretrained one). bf16 = autocast, used by default where the CPU
computes bf16 natively; fidelity vs float32 on the same pairs.

{table(["depth", "precision", "ms/query", "÷ fp32 time", "score Pearson vs fp32", "top-10 overlap vs fp32"], rows)}
"""


# -- hybrid's fusion depth and beam width -----------------------------------------------------------
HYBRID_SETTINGS = {"before: 100 candidates, ef 256": (100, 256), "default: 30 candidates, ef 64": (30, 64)}


def bench_hybrid(rounds: int) -> dict:
    """The hybrid store query at ~106K chunks (search_latency.py's large index) under the old and
    the new defaults of candidates per retriever and the dense side's HNSW beam, interleaved over
    ``rounds`` so drift hits both; and their nDCG@10 on SciFact *train* (never test: this chose a
    default), paired test."""
    from search_latency import ALL, queries

    from ragtune.index.base import Query

    large_home = CACHE / "large-home"
    if not (large_home / "collections" / "large").exists():
        raise SystemExit("the hybrid section needs search_latency.py's large index: run it first")
    qs = queries()
    times: dict[str, list[float]] = {name: [] for name in HYBRID_SETTINGS}
    with Collection.open(large_home, "large") as coll:
        n = coll.store.count()
        vecs = coll.embedder.embed_documents(qs)
        for r in range(rounds + 1):  # round 0 warms up
            for name, (cand, ef) in HYBRID_SETTINGS.items():
                for q, v in zip(qs, vecs):
                    query = Query("hybrid", ALL.tokens(), k=10, vector=v, text=q, hnsw_ef=ef, candidates=cand)
                    t0 = time.perf_counter()
                    coll.store.search(query)
                    if r:
                        times[name].append(time.perf_counter() - t0)
    home = HOME / "homes" / "ingest"
    coll = Collection.open(home, "scifact-torch-bf16") if (home / "collections" / "scifact-torch-bf16").exists() \
        else _scifact_collection("torch-bf16")[0]
    ds = load_beir(DATA / "scifact", "train")
    per: dict[str, dict] = {}
    ndcg: dict[str, float] = {}
    try:
        base = coll.pipeline.query
        for name, (cand, ef) in HYBRID_SETTINGS.items():
            coll.pipeline.query = base.model_copy(update={"candidates": cand, "hybrid_hnsw_ef": ef})
            searcher = Searcher(coll)
            run = {q: doc_run(searcher.search(ds.queries[q], Principal(), k=30, rerank=False), 10) for q in ds.qrels}
            per[name] = per_query(ds.qrels, run, ["nDCG@10"])["nDCG@10"]
            ndcg[name] = score_run(ds.qrels, run, ["nDCG@10"])["nDCG@10"]
        coll.pipeline.query = base
    finally:
        coll.close()
    before, now = list(HYBRID_SETTINGS)
    cmp = compare_paired(per[before], per[now])
    out: dict = {"chunks": n, "queries": len(qs), "rounds": rounds, "train_queries": len(ds.qrels), "settings": {}}
    for name, (cand, ef) in HYBRID_SETTINGS.items():
        p50, p95 = np.percentile(np.array(times[name]) * 1000, [50, 95])
        out["settings"][name] = {"candidates": cand, "hnsw_ef": ef, "store_p50_ms": float(p50),
                                 "store_p95_ms": float(p95), "scifact_train_nDCG@10": ndcg[name]}
    out["p50_ratio"] = out["settings"][now]["store_p50_ms"] / out["settings"][before]["store_p50_ms"]
    out["nDCG@10_delta"], out["p"] = cmp.delta, cmp.p_value
    print("hybrid", json.dumps(out), flush=True)
    return out


def hybrid_report(r: dict) -> str:
    rows = [[name, m["candidates"], m["hnsw_ef"], m["store_p50_ms"], m["store_p95_ms"], m["scifact_train_nDCG@10"]]
            for name, m in r["settings"].items()]
    return f"""
## Hybrid: fusion depth and the dense side's beam (measured at {r.get('measured_at_commit', '?')})

Store time of the one fused hybrid query (Qdrant Edge, {r['chunks']:,} chunks, all groups visible,
{r['queries']} queries × {r['rounds']} interleaved rounds after a warm-up round), and nDCG@10 on
SciFact **train** ({r['train_queries']} claims; the test split was not used to choose).
New ÷ old p50: **{r['p50_ratio']:.2f}**; nDCG@10 Δ {r['nDCG@10_delta']:+.4f} (paired randomisation p = {r['p']:.2f}).
Dense-only search keeps ef 256 (recall@10 ≥ 0.99 vs exact at this size).

{table(["setting", "candidates", "dense ef", "store p50 ms", "store p95 ms", "SciFact train nDCG@10"], rows)}
"""


def targets_report(results: dict) -> str:
    """Issue 21's targets against the latest figures (server.json and scale.json from their own
    benchmarks, when they have run)."""
    rows = []
    enc = results.get("encoder")
    if enc:
        best = enc["backends"][enc["chosen"]]
        rows.append(["encoder ≥ 2× fp32 at top-10 overlap ≥ 0.99", f"{enc['chosen']}: {best['speedup']:.2f}× at "
                     f"{best['overlap']:.3f}", "met" if best["speedup"] >= 2 else "missed"])
    hyb = results.get("hybrid")
    if hyb:
        now = hyb["settings"][list(HYBRID_SETTINGS)[1]]["store_p50_ms"]
        rows.append(["hybrid store p50 ≤ 2 ms at 106K", f"{now:.2f} ms", "met" if now <= 2 else "missed"])
    bm = results.get("bm25")
    if bm:
        worst = min(row["pgvector_vs_edge_ratio"] for c, row in bm.items() if isinstance(row, dict) and
                    "pgvector_vs_edge_ratio" in row)
        rows.append(["pgvector BM25 nDCG@10 ÷ Qdrant Edge ≥ 0.97", f"worst corpus {worst:.3f}",
                     "met" if worst >= 0.97 else "missed"])
        low = min(row[f"{b}_vs_bm25s"]["ratio"] for c, row in bm.items() if isinstance(row, dict)
                  for b in ("qdrant-edge", "pgvector") if f"{b}_vs_bm25s" in row)
        rows.append(["BM25 never trails bm25s", f"lowest ratio {low:.3f}", "met" if low >= 1 else "missed"])
    server = RESULTS / "server.json"
    if server.exists():
        peak = json.loads(server.read_text())["rss_mb"]["peak"]  # MiB (VmHWM)
        rows.append(["server RSS ≤ 3 GB under 32 clients", f"peak {peak:.0f} MiB = {peak / 1024:.2f} GiB (server.md)",
                     "met" if peak <= 3 * 1024 else "missed"])
    scale = RESULTS / "scale.json"
    if scale.exists():
        sc = json.loads(scale.read_text())
        p50 = sc["latency_ms"]["all"]["hybrid"]["store_p50"]
        rows.append([f"{sc['chunks']:,} chunks: hybrid p50 ≤ 10 ms, RSS ≤ 8 GB",
                     f"{p50:.2f} ms store, serving RSS {sc['serving_peak_rss_gb']:.2f} GiB (scale.md)",
                     "met" if p50 <= 10 and sc["serving_peak_rss_gb"] <= 8 else "missed"])
    return "\n## Targets (issue 21)\n\n" + table(["target", "measured", ""], rows) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="", help="comma-separated sections to (re)measure")
    ap.add_argument("--short-queries", type=int, default=2000, help="SQuAD questions sampled for the short corpus")
    ap.add_argument("--backends", default="qdrant-edge,pgvector")
    ap.add_argument("--fresh", action="store_true", help="rebuild the cached keyword indexes")
    ap.add_argument("--encoder-texts", type=int, default=512)
    ap.add_argument("--ingest-backend", default="torch-bf16", help="the embedder backend the ingest section times")
    ap.add_argument("--rerank-queries", type=int, default=100)
    ap.add_argument("--hybrid-rounds", type=int, default=3)
    args = ap.parse_args()
    if args.fresh:
        shutil.rmtree(HOME / "homes", ignore_errors=True)
    path = RESULTS / "performance.json"
    results: dict = json.loads(path.read_text()) if path.exists() else {}
    only = {s for s in args.only.split(",") if s}
    sections = {"encoder": (lambda: bench_encoder(args.encoder_texts), encoder_report),
                "bm25": (lambda: bench_bm25(args.short_queries, args.backends.split(",")), bm25_report),
                "ingest": (lambda: bench_ingest(args.ingest_backend), ingest_report),
                "reranker": (lambda: bench_reranker(args.rerank_queries), reranker_report),
                "hybrid": (lambda: bench_hybrid(args.hybrid_rounds), hybrid_report)}
    for name, (run, _) in sections.items():
        if only and name not in only:
            continue
        t0 = time.perf_counter()
        results[name] = run() | {"measured_at_commit": git_commit()}
        print(f"{name}: {time.perf_counter() - t0:.0f} s", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2))
    body = targets_report(results) + "\n".join(report(results[name]) for name, (_, report) in sections.items()
                                                if name in results)
    write_report("performance", "Performance and the keyword side", body)


if __name__ == "__main__":
    main()
