"""Load test of `ragtune serve` on loopback: concurrent clients searching and asking.

1. Index the first --docs SciFact abstracts into a collection (public), then measure warm
   in-process search latency (Searcher, hybrid) on SciFact test claims, one at a time.
2. Start a real `ragtune serve` process, measure the same searches one at a time over HTTP
   (→ the HTTP overhead ratio), then --clients concurrent clients each looping for --duration
   seconds: search (hybrid, k=10), then ask (extractive answers: retrieval + reading, no LLM),
   then generative ask with the local SmolLM2 (--gen-clients clients for --gen-duration s), where
   the bounded generation queue turns work away with 503 + Retry-After by design.
3. Report p50/p99 latency, throughput, status counts (any error other than a deliberate 503
   is a failure), and the server's resident memory (current and peak).

Run from the repo root:  .venv/bin/python benchmarks/server.py [--clients 32 --duration 30]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import CACHE, DATA, table, write_report  # noqa: E402

HOME = CACHE / "server-home"


def corpus(n_docs: int) -> Path:
    import json

    from ragtune.data.beir import load_beir

    out = HOME / "source" / "scifact.jsonl"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        docs = list(load_beir(DATA / "scifact", "test").corpus.items())[:n_docs]
        out.write_text("".join(json.dumps({"_id": d, "title": r["title"], "text": r["text"]}) + "\n" for d, r in docs))
    return out


def rss_mb(pid: int) -> tuple[float, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    field = lambda name: int(next(line.split()[1] for line in status.splitlines() if line.startswith(name))) / 1024  # noqa: E731
    return field("VmRSS"), field("VmHWM")


def pct(samples: list[float]) -> tuple[float, float]:
    ms = np.array(samples) * 1000 if samples else np.array([float("nan")])
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def load(url: str, key: str, clients: int, duration: float, make_request) -> dict:
    """``clients`` threads, each sending requests back to back until ``duration`` is over."""
    import httpx2 as httpx

    latencies: list[float] = []
    statuses: Counter = Counter()
    lock = threading.Lock()
    stop = time.monotonic() + duration
    start_barrier = threading.Barrier(clients)

    def client(i: int) -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=300) as c:
            start_barrier.wait()
            n = 0
            while time.monotonic() < stop:
                t = time.perf_counter()
                try:
                    status = make_request(c, i, n).status_code
                except httpx.HTTPError as e:
                    status = type(e).__name__
                dt = time.perf_counter() - t
                with lock:
                    statuses[status] += 1
                    if status == 200:
                        latencies.append(dt)
                n += 1
                if status == 503:
                    time.sleep(0.2)  # a real client honours Retry-After; this one retries soon

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    p50, p99 = pct(latencies)
    return {"clients": clients, "ok": statuses.get(200, 0), "statuses": dict(statuses), "p50_ms": p50, "p99_ms": p99,
            "rps": statuses.get(200, 0) / wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--gen-clients", type=int, default=16)
    ap.add_argument("--gen-duration", type=float, default=60.0)
    ap.add_argument("--sequential", type=int, default=100, help="queries for the one-at-a-time latency")
    args = ap.parse_args()

    import httpx2 as httpx

    from ragtune.collection import Collection
    from ragtune.config import PipelineConfig
    from ragtune.data.beir import load_beir
    from ragtune.ingest.sync import ingest
    from ragtune.retrieve import Searcher
    from ragtune.serve.keys import KeyStore
    from ragtune.types import Acl, Principal

    queries = list(load_beir(DATA / "scifact", "test").queries.values())
    with Collection.create(HOME, "scifact", PipelineConfig(), exist_ok=True) as coll:
        report = ingest(coll, corpus(args.docs), Acl(public=True))
        chunks = coll.store.count()
        searcher = Searcher(coll)
        for q in queries[:10]:
            searcher.search(q, Principal(), mode="hybrid", k=10)
        inproc = []
        for q in queries[: args.sequential]:
            t = time.perf_counter()
            searcher.search(q, Principal(), mode="hybrid", k=10)
            inproc.append(time.perf_counter() - t)
    with Collection.create(HOME, "scifact-read", PipelineConfig().with_overrides(["answer.mode=extractive"]),
                           exist_ok=True) as coll:
        ingest(coll, corpus(args.docs), Acl(public=True))
    print(f"indexed {chunks} chunks ({report.indexed} new documents)", flush=True)

    store = KeyStore(HOME)
    key = store.create("bench", role="user")[0]
    store.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "RAGTUNE_HOME": str(HOME)}
    proc = subprocess.Popen([sys.executable, "-m", "ragtune", "serve", "--port", str(port), "--set", "answer.max_new_tokens=32"],
                            env=env)
    try:
        for _ in range(600):
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=300) as c:
            search = lambda q: c.post("/v1/collections/scifact/search", json={"query": q, "mode": "hybrid", "k": 10})  # noqa: E731
            for q in queries[:10]:
                assert search(q).status_code == 200
            over_http = []
            for q in queries[: args.sequential]:
                t = time.perf_counter()
                search(q)
                over_http.append(time.perf_counter() - t)
            c.post("/v1/collections/scifact/ask", json={"question": queries[0]})  # load SmolLM2 before the clock
            c.post("/v1/collections/scifact-read/ask", json={"question": queries[0]})
        rss_idle = rss_mb(proc.pid)[0]
        pick = lambda i, n: queries[(i * 37 + n) % len(queries)]  # noqa: E731
        phases = {
            "search (hybrid, k=10)": load(url, key, args.clients, args.duration, lambda c, i, n: c.post(
                "/v1/collections/scifact/search", json={"query": pick(i, n), "mode": "hybrid", "k": 10})),
            "ask, extractive (retrieve + read)": load(url, key, args.clients, args.duration, lambda c, i, n: c.post(
                "/v1/collections/scifact-read/ask", json={"question": pick(i, n)})),
            "ask, generative (SmolLM2, 32 tokens)": load(url, key, args.gen_clients, args.gen_duration, lambda c, i, n: c.post(
                "/v1/collections/scifact/ask", json={"question": pick(i, n)})),
        }
        rss_now, rss_peak = rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=60)

    errors = {name: {s: n for s, n in p["statuses"].items() if s not in (200, 503)} for name, p in phases.items()}
    ip50, ip99 = pct(inproc)
    hp50, hp99 = pct(over_http)
    rows = [[name, p["clients"], p["ok"], p["statuses"].get(503, 0), sum(errors[name].values()), f"{p['rps']:.1f}",
             f"{p['p50_ms']:.0f}", f"{p['p99_ms']:.0f}"] for name, p in phases.items()]
    body = f"""
SciFact: the first {args.docs} test-corpus abstracts → {chunks} chunks, one public collection (and an
extractive-mode twin). Server: one `ragtune serve` process on 127.0.0.1, default settings (`--max-queue 8`).

## One request at a time (warm, {args.sequential} SciFact claims, hybrid k=10)

| path | p50 ms | p99 ms |
|---|---|---|
| in-process `Searcher.search` | {ip50:.1f} | {ip99:.1f} |
| over HTTP (`POST /v1/collections/c/search`) | {hp50:.1f} | {hp99:.1f} |

HTTP / in-process p50 ratio: **{hp50 / ip50:.2f}** (auth, JSON, loopback TCP, thread hand-off).

## Concurrent clients

{table(["phase", "clients", "200", "503 (queue full)", "other errors", "req/s", "p50 ms", "p99 ms"], rows)}

- Errors other than the deliberate 503s: {sum(sum(e.values()) for e in errors.values())} ({errors}).
- Latencies are of successful requests, client side, {args.duration:.0f} s per phase ({args.gen_duration:.0f} s for generation).
- Generation runs one at a time per model (2 CPU cores); the queue holds 8, the rest are turned away
  at once with `Retry-After` instead of piling up. For real generation throughput point the
  generator at vLLM (see docs/serving.md).
- Server memory (RSS): {rss_idle:.0f} MB after warm-up (MiniLM + SmolLM2 + store), {rss_now:.0f} MB after the load, peak {rss_peak:.0f} MB.
"""
    write_report("server", "Server load test on loopback", body)
    import json

    from _common import RESULTS, git_commit

    (RESULTS / "server.json").write_text(json.dumps({
        "measured_at_commit": git_commit(), "clients": args.clients, "errors": errors,
        "rss_mb": {"after_warm_up": rss_idle, "after_load": rss_now, "peak": rss_peak},
        "http_over_inprocess_p50": hp50 / ip50, "phases": phases}, indent=2, default=str))


if __name__ == "__main__":
    main()
