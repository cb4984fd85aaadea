"""Search latency p50/p95 per mode, single query, warm, at SciFact size and at ~100K chunks;
plus HNSW recall@10 vs exact at ~100K, unfiltered and under a 1%-selective ACL filter.

The ~100K index is built by ragtune itself from real text: SciFact abstracts, SQuAD dev
paragraphs and COVID-QA articles cut into ≤24-token chunks; each document gets one of 100
groups, so a one-group principal sees ~1% of the index.

Run from the repo root:  .venv/bin/python benchmarks/search_latency.py   (SciFact size needs
benchmarks/scifact.py to have run first; its index is reused.)
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import CACHE, DATA, Timer, percentiles, table, write_report  # noqa: E402

from ragtune.collection import Collection  # noqa: E402
from ragtune.config import PipelineConfig, QueryConfig  # noqa: E402
from ragtune.data.beir import load_beir  # noqa: E402
from ragtune.index.base import Query  # noqa: E402
from ragtune.ingest.sync import ingest  # noqa: E402
from ragtune.retrieve import Searcher  # noqa: E402
from ragtune.types import Acl, Principal  # noqa: E402

N_GROUPS = 100
EF = QueryConfig().hnsw_ef  # the default search beam widths, as the Searcher uses them
HYBRID_EF = QueryConfig().hybrid_hnsw_ef
ALL = Principal("bench", tuple(f"g{i}" for i in range(N_GROUPS)))
ONE = Principal("bench", ("g7",))


def build_large(home: Path) -> tuple[Collection, float, int]:
    src = CACHE / "large-corpus.jsonl"
    if not src.exists():
        records = []
        sf = load_beir(DATA / "scifact", "test")
        records += [{"id": f"scifact-{d}", "title": r["title"], "text": r["text"]} for d, r in sf.corpus.items()]
        for name, path in (("squad", DATA / "squad" / "dev-v1.1.json"), ("covidqa", DATA / "covidqa" / "covidqa-dev.json")):
            for a, article in enumerate(json.loads(path.read_text())["data"]):
                for p, para in enumerate(article["paragraphs"]):
                    records.append({"id": f"{name}-{a}-{p}", "title": article.get("title", ""), "text": para["context"]})
        for r in records:
            r["acl"] = {"groups": [f"g{zlib.crc32(r['id'].encode()) % N_GROUPS}"]}
        src.write_text("\n".join(json.dumps(r) for r in records))
    existing = (home / "collections" / "large").exists()
    coll = Collection.create(home, "large", PipelineConfig().with_overrides(
        ["chunking.chunk_size=24", "chunking.chunk_overlap=0", "chunking.parent_size=0", "ingest.batch_chunks=2048"]),
        exist_ok=True)
    coll.embedder  # noqa: B018 - load before timing
    with Timer() as t:
        ingest(coll, src, Acl())
    return coll, (0.0 if existing else t.seconds), coll.store.count()


def queries() -> list[str]:
    sf = load_beir(DATA / "scifact", "test")
    squad = json.loads((DATA / "squad" / "dev-v1.1.json").read_text())
    qs = [qa["question"] for a in squad["data"] for p in a["paragraphs"] for qa in p["qas"]]
    return list(sf.queries.values())[:150] + random.Random(0).sample(qs, 150)


def latency(coll: Collection, qs: list[str], principal: Principal) -> dict[str, tuple]:
    searcher = Searcher(coll)
    vecs = coll.embedder.embed_documents(qs)
    out = {}
    for label in ("dense", "bm25", "hybrid", "hybrid --explain"):
        mode, explain = label.split()[0], label.endswith("--explain")  # --explain: per-retriever ranks too
        for q in qs[:20]:  # warm-up
            searcher.search(q, principal, mode=mode, k=10, with_ranks=explain)
        e2e, store_only = [], []
        for q, v in zip(qs, vecs):
            t0 = time.perf_counter()
            searcher.search(q, principal, mode=mode, k=10, with_ranks=explain)
            e2e.append(time.perf_counter() - t0)
            query = Query(mode, principal.tokens(), k=10, vector=v if mode != "bm25" else None,
                          text=q if mode != "dense" else None, hnsw_ef=HYBRID_EF if mode == "hybrid" else EF,
                          with_ranks=explain)
            t0 = time.perf_counter()
            coll.store.search(query)
            store_only.append(time.perf_counter() - t0)
        out[label] = (*percentiles(store_only), *percentiles(e2e))
        print(label, principal.groups[:2], out[label])
    return out


def recall(coll: Collection, qs: list[str], principal: Principal) -> float:
    """HNSW dense top-10 vs exact top-10 over the chunks the principal may see."""
    allowed = set(principal.tokens())
    payloads = [p for p in coll.store.scroll_payloads(["acl"]) if allowed & set(p.get("acl", []))]
    ids = [p["point_id"] for p in payloads]
    mat = coll.store.vectors(ids)
    qv = coll.embedder.embed_documents(qs)
    sims = qv @ mat.T
    scores = []
    for i in range(len(qs)):
        exact = {ids[j] for j in np.argsort(-sims[i])[:10]}
        got = {h.point_id for h in coll.store.search(Query("dense", principal.tokens(), k=10, vector=qv[i], with_ranks=False, hnsw_ef=EF))}
        scores.append(len(exact & got) / 10)
    return float(np.mean(scores))


def main() -> None:
    argparse.ArgumentParser(description=__doc__).parse_args()
    qs = queries()
    rows = []
    sf_home = CACHE / "scifact-home"
    if (sf_home / "collections" / "scifact").exists():
        with Collection.open(sf_home, "scifact") as coll:
            n = coll.store.count()
            for mode, (s50, s95, e50, e95) in latency(coll, qs, Principal()).items():
                rows.append([f"SciFact ({n} chunks)", "public", mode, f"{s50:.2f}", f"{s95:.2f}", f"{e50:.2f}", f"{e95:.2f}"])
    else:
        print("SciFact index not found: run benchmarks/scifact.py first for the SciFact-size rows")
    home = CACHE / "large-home"
    coll, build_s, n = build_large(home)
    info = coll.store._shard.info()
    for label, principal in (("all 100 groups", ALL), ("1 group (~1%)", ONE)):
        for mode, (s50, s95, e50, e95) in latency(coll, qs, principal).items():
            rows.append([f"large ({n} chunks)", label, mode, f"{s50:.2f}", f"{s95:.2f}", f"{e50:.2f}", f"{e95:.2f}"])
    r_all = recall(coll, qs, ALL)
    r_one = recall(coll, qs, ONE)
    visible_one = coll.store.count(ONE.tokens())
    coll.close()
    body = f"""
{len(qs)} queries (150 SciFact test claims + 150 SQuAD dev questions), k=10, one at a time,
after 20 warm-up queries per mode. *store* = the Qdrant Edge query alone (query vector
precomputed); *end to end* = `Searcher.search`, including embedding the query with MiniLM on CPU.

{table(["index", "principal sees", "mode", "store p50 ms", "store p95 ms", "end-to-end p50 ms", "end-to-end p95 ms"], rows)}

Large index: {n} chunks from SciFact + SQuAD dev + COVID-QA dev (≤24 tokens each), {info.segments_count} segments,
{info.indexed_vectors_count} vectors in HNSW graphs (m=16, ef_construct=100, search ef={EF}; hybrid's dense side {HYBRID_EF}).
{"Built in " + f"{build_s:.0f} s" if build_s else "Index reused from an earlier run"}.

## HNSW recall@10 vs exact search at {n} chunks

| principal | visible chunks | recall@10 |
|---|---|---|
| all groups (unfiltered in effect) | {n} | {r_all:.4f} |
| one group (~1% selectivity, filter inside the query) | {visible_one} | {r_one:.4f} |
"""
    write_report("search_latency", "Search latency and HNSW recall at SciFact size and ~100K chunks", body)


if __name__ == "__main__":
    main()
