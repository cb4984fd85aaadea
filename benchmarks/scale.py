"""A million chunks in the embedded store (Qdrant Edge): ingest rate, on-disk size, memory,
p50/p95 per mode with and without a 1% ACL filter, HNSW recall@10 vs exact search.

Text: the ~106K chunks of search_latency.py's large index (SciFact, SQuAD dev and COVID-QA dev,
≤ 24 tokens each) repeated ``--copies`` times; copy c > 0 of a chunk drops one of its words
(the c-th, cyclically), so copies are near- and not exact duplicates. Vectors: the real MiniLM
vectors of those chunks (read from the large index), each copy moved by seeded Gaussian noise to
cosine ≈ 0.95 with its original and renormalised. Encoding a million texts on 2 cores would take
over an hour for figures about the store, not the encoder (the encoder has its own section in
performance.py). Every chunk gets one of 100 groups (crc32 of its id), so a one-group principal
sees ~1%.

Ingest is ragtune's own path (JSONL → chunker → manifest → store, HNSW built at the end), with an
embedder stand-in that hands back those vectors; it resumes where it stopped if killed. Queries
are real: 150 SciFact claims + 150 SQuAD questions embedded by MiniLM, searched in a fresh
process whose peak resident memory is the serving figure.

Run from the repo root (needs search_latency.py's large index):
    .venv/bin/python benchmarks/scale.py [--copies 10]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import CACHE, git_commit, table, write_report  # noqa: E402
from search_latency import ALL, N_GROUPS, ONE, latency, queries, recall  # noqa: E402

from ragtune.collection import Collection  # noqa: E402
from ragtune.config import PipelineConfig  # noqa: E402
from ragtune.ingest.sync import ingest  # noqa: E402
from ragtune.types import Acl, search_text  # noqa: E402

HOME = CACHE / "scale-home"
NOISE_COS = 0.95
OVERRIDES = ["chunking.chunk_size=24", "chunking.chunk_overlap=0", "chunking.parent_size=0", "ingest.batch_chunks=4096"]


def variant(text: str, c: int) -> str:
    """Copy ``c`` of a chunk's text: the original for 0, else without its (c-1)-th word (cyclically)."""
    words = text.split()
    if c == 0 or len(words) < 2:
        return text
    i = (c - 1) % len(words)
    return " ".join(words[:i] + words[i + 1:])


class CopiedVectors:
    """The embedder during ingest: each text's vector is its original chunk's real MiniLM vector,
    perturbed per copy (seeded, so a re-run writes the same vectors)."""

    def __init__(self, real, base: np.ndarray, lookup: dict[str, tuple[int, int]]):
        self.tokenizer, self.dim = real.tokenizer, real.dim
        self.base, self.lookup = base, lookup
        # Per-coordinate noise σ with |noise|² ≈ dim·σ² giving cos = 1 / sqrt(1 + dim·σ²).
        self.sigma = float(np.sqrt((1 / NOISE_COS ** 2 - 1) / base.shape[1]))
        self.unknown = 0

    def embed_documents(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            row, c = self.lookup.get(t, (zlib.crc32(t.encode()) % len(self.base), -1))
            self.unknown += c < 0  # a text the chunker cut differently: a stable stand-in vector
            v = self.base[row].astype(np.float32)
            if c != 0:
                v = v + np.random.default_rng(zlib.crc32(t.encode())).normal(0, self.sigma, self.dim).astype(np.float32)
            out[i] = v / np.linalg.norm(v)
        return out


def source(copies: int) -> tuple[Path, np.ndarray, dict[str, tuple[int, int]]]:
    """The JSONL of every copy (written once), the original vectors, and search text → (row, copy)."""
    with Collection.open(CACHE / "large-home", "large") as large:
        payloads = large.store.scroll_payloads(["text", "title"])
        payloads.sort(key=lambda p: p["point_id"])
        base = large.store.vectors([p["point_id"] for p in payloads]).astype(np.float16)
    path = HOME / f"million-{copies}.jsonl"
    lookup: dict[str, tuple[int, int]] = {}
    write = not path.exists()
    tmp = path.with_suffix(".tmp")
    with (tmp.open("w") if write else open("/dev/null", "w")) as f:
        for row, p in enumerate(payloads):
            for c in range(copies):
                text = variant(p["text"], c)
                lookup.setdefault(search_text(text, p.get("title", "")), (row, c))
                if write:
                    rid = f"{p['point_id']}-{c}"
                    f.write(json.dumps({"id": rid, "title": p.get("title", ""), "text": text,
                                        "acl": {"groups": [f"g{zlib.crc32(rid.encode()) % N_GROUPS}"]}}) + "\n")
    if write:
        tmp.replace(path)
    return path, base, lookup


def name(copies: int) -> str:
    return f"copies-{copies}"


def build(copies: int) -> dict:
    HOME.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    path, base, lookup = source(copies)
    prepared = time.perf_counter() - t0
    coll = Collection.create(HOME, name(copies), PipelineConfig().with_overrides(OVERRIDES), exist_ok=True)
    try:
        stand_in = CopiedVectors(coll.embedder, base, lookup)
        coll.embedder = stand_in
        t0 = time.perf_counter()
        report = ingest(coll, path, Acl())
        seconds = time.perf_counter() - t0
        chunks = coll.store.count()
    finally:
        coll.close()
    return {"chunks": chunks, "written_this_run": report.chunks, "ingest_s": seconds,
            "ingest_chunks_per_s": report.chunks / seconds if report.chunks else None,
            "failed": report.failed, "unmatched_texts": stand_in.unknown, "prepare_s": prepared,
            "ingest_peak_rss_gb": peak_rss_gb()}


def measure(copies: int) -> dict:
    """In a fresh process: open, search, check recall; peak RSS is what serving this index costs."""
    qs = queries()
    coll = Collection.open(HOME, name(copies))
    try:
        coll.embedder  # noqa: B018 - MiniLM loaded before the clock
        out: dict = {"latency_ms": {}}
        for label, principal in (("all", ALL), ("one_group", ONE)):
            out["latency_ms"][label] = {mode: dict(zip(["store_p50", "store_p95", "e2e_p50", "e2e_p95"], v))
                                       for mode, v in latency(coll, qs, principal).items()}
        # Before the recall check, which holds every vector in memory for the exact search.
        out["serving_peak_rss_gb"] = peak_rss_gb()
        out["recall@10"] = {"all": recall(coll, qs[:100], ALL), "one_group": recall(coll, qs, ONE)}
        out["visible_one_group"] = coll.store.count(ONE.tokens())
    finally:
        coll.close()
    return out


def peak_rss_gb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited across exec)."""
    line = next(ln for ln in Path("/proc/self/status").read_text().splitlines() if ln.startswith("VmHWM:"))
    return int(line.split()[1]) / 2 ** 20


def disk_gb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2 ** 30


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--copies", type=int, default=10)
    ap.add_argument("--phase", choices=["all", "measure"], default="all")
    args = ap.parse_args()
    if args.phase == "measure":
        print("RESULT " + json.dumps(measure(args.copies)), flush=True)
        return
    built = build(args.copies)
    print("built", json.dumps(built), flush=True)
    proc = subprocess.run([sys.executable, __file__, "--phase", "measure", "--copies", str(args.copies)], capture_output=True, text=True, check=True)
    measured = json.loads(next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))[7:])
    result = built | measured | {"disk_gb": disk_gb(HOME / "collections" / name(copies=args.copies)), "copies": args.copies,
                                 "measured_at_commit": git_commit()}
    if args.copies == 1:  # the smoke run (the large index as it is) writes no report
        print(json.dumps(result, indent=2))
        return
    (Path(__file__).parent / "results" / "scale.json").write_text(json.dumps(result, indent=2))
    rows = [[label, mode, *(f"{m[k]:.2f}" for k in ("store_p50", "store_p95", "e2e_p50", "e2e_p95"))]
            for label, modes in result["latency_ms"].items() for mode, m in modes.items()]
    rate = f"{result['ingest_chunks_per_s']:.0f} chunks/s" if result["ingest_chunks_per_s"] else "reused"
    body = f"""
{result['chunks']:,} chunks ({args.copies} near-copies of each of the large index's chunks; real text, real
MiniLM vectors for the originals, seeded perturbed copies, cosine ≈ {NOISE_COS} to the original: see
the module docstring). One Qdrant Edge shard, default HNSW (m=16, ef_construct=100, search ef=256).

## Build and footprint

{table(["chunks", "ingest s", "ingest rate", "on disk GiB", "ingest peak RSS GiB", "serving peak RSS GiB"],
       [[result['chunks'], f"{result['ingest_s']:.0f}", rate, f"{result['disk_gb']:.2f}",
         f"{result['ingest_peak_rss_gb']:.2f}", f"{result['serving_peak_rss_gb']:.2f}"]])}

Ingest rate is ragtune's ingest without the encoder (chunking, hashing, manifest, store writes,
the HNSW build at the end); with MiniLM the encoder dominates (performance.md). Ingest peak RSS
includes the benchmark's own text → vector table (~1M entries).

## Latency (300 queries, k=10, one at a time, warm)

*store* = the Qdrant Edge query alone; *end to end* = `Searcher.search` with MiniLM embedding the query.

{table(["principal sees", "mode", "store p50 ms", "store p95 ms", "end-to-end p50 ms", "end-to-end p95 ms"], rows)}

## HNSW recall@10 vs exact

| principal | recall@10 |
|---|---|
| all groups (100 queries) | {result['recall@10']['all']:.4f} |
| one group (~1%, {result['visible_one_group']:,} chunks visible) | {result['recall@10']['one_group']:.4f} |
"""
    lat = result["latency_ms"]
    body += f"""
Reading: at {result['chunks']:,} chunks one embedded shard answers hybrid in {lat['all']['hybrid']['store_p50']:.1f} ms
p50 (store), {lat['all']['hybrid']['e2e_p50']:.0f} ms end to end with the query embedded, dense in
{lat['all']['dense']['store_p50']:.1f} ms at recall@10 {result['recall@10']['all']:.3f}, and serving it takes
{result['serving_peak_rss_gb']:.1f} GiB resident. The keyword side grows worst (BM25
{lat['all']['bm25']['store_p50']:.1f} ms p50, {lat['all']['bm25']['store_p95']:.0f} ms p95: near-copies make every
posting list {args.copies}× longer, so this is pessimistic for real text), and more so under the 1% ACL
({lat['one_group']['bm25']['store_p50']:.1f} ms: the filter is checked per posting). Ingest needs far more memory than
serving ({result['ingest_peak_rss_gb']:.0f} GiB peak, this benchmark's text → vector table included): build
collections of this size on a machine with ≥ 16 GiB, or use the Qdrant server path (docs/backends.md),
which also takes the index build out of the API process.
"""
    write_report("scale", "A million chunks in the embedded store", body)


if __name__ == "__main__":
    main()
