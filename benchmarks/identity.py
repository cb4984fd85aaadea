"""Identity and operations overheads, measured side by side in one run:

1. What identifying a caller costs per request: an API key (SHA-256 + one SQLite lookup) vs an
   OIDC token (RS256 signature check against the cached JWKS, claims), interleaved, p50/p95 µs.
2. What tracing costs search: hybrid searches on a real collection (this repo's docs/, the real
   embedder) in three arms, each its own process (a process has one tracer provider): `off` (no
   provider: the API's no-op spans), `metrics` (the SDK provider + the server's stage-metrics
   processor) and `otlp` (+ the batch exporter to a loopback OTLP receiver). The arms alternate
   (off, metrics, otlp, off, ...) so drift on a shared machine hits them alike; queries/s median.
3. MCP vs HTTP: the same search through a real `ragtune serve` — POST /v1/collections/docs/search
   and the MCP `search` tool over streamable HTTP (the SDK's client, one session) — interleaved,
   p50 ms of each and their ratio.

Run from the repo root:  .venv/bin/python benchmarks/identity.py [--rounds 3 --searches 300]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import REPO, RESULTS, table, write_report  # noqa: E402

AUD = "ragtune-bench"
ISSUER = "https://idp.example"
QUERIES = ["what happens when ingestion is killed half-way?", "how are API keys stored", "rerank depth",
           "which store backends exist", "how does the promotion gate decide", "OpenAI-compatible endpoints"]


def auth_overhead(n: int) -> dict:
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    from ragtune.serve.identity import Authenticator, OidcConfig
    from ragtune.serve.keys import KeyStore

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())), "kid": "k1", "use": "sig", "alg": "RS256"}
    home = tempfile.mkdtemp()
    keys = KeyStore(home)
    for i in range(1000):  # a store with some keys in it, not one
        keys.create(f"user{i}", groups=["eng"])
    secret, _ = keys.create("ana", groups=["eng"])
    # The provider's keys are fetched once and cached: what every request after the first pays.
    auth = Authenticator(keys, OidcConfig(issuer=ISSUER, audience=AUD, jwks_url=ISSUER + "/jwks"),
                         fetch=lambda url: {"keys": [jwk]})
    now = int(time.time())
    token = jwt.encode({"iss": ISSUER, "aud": AUD, "sub": "ana", "groups": ["eng"], "iat": now, "exp": now + 3600},
                       key, algorithm="RS256", headers={"kid": "k1"})
    arms = {"api-key": {"authorization": f"Bearer {secret}"}, "oidc-jwt": {"authorization": f"Bearer {token}"}}
    for headers in arms.values():
        assert auth.identify(headers, "127.0.0.1") is not None
    samples: dict[str, list[float]] = {a: [] for a in arms}
    for _ in range(n):
        for arm, headers in arms.items():
            t = time.perf_counter()
            auth.identify(headers, "127.0.0.1")
            samples[arm].append((time.perf_counter() - t) * 1e6)
    keys.close()
    out = {a: {"p50_us": statistics.median(s), "p95_us": sorted(s)[int(0.95 * len(s))]} for a, s in samples.items()}
    out["jwt_over_key_p50"] = out["oidc-jwt"]["p50_us"] / out["api-key"]["p50_us"]
    return out


class Receiver:
    """A loopback OTLP/HTTP endpoint that accepts exports (and counts their bytes)."""

    def __init__(self):
        self.bytes = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                receiver.bytes += len(self.rfile.read(int(self.headers["content-length"])))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_port}/v1/traces"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()


def search_arm(home: str, arm: str, searches: int, otlp: str) -> dict:
    """One arm in this process: queries/s of hybrid searches, and µs per stage span (timed alone:
    the part of a search's cost that tracing adds, free of the search's own variance)."""
    from ragtune.collection import Collection
    from ragtune.retrieve import Searcher
    from ragtune.types import Principal

    if arm != "off":
        from ragtune.serve.telemetry import Telemetry, TelemetryConfig

        Telemetry(TelemetryConfig(otlp_endpoint=otlp if arm == "otlp" else None), lambda: [], lambda: []).install_tracing()
    coll = Collection.open(home, "docs")
    searcher = Searcher(coll)
    for q in QUERIES:  # warm-up
        searcher.search(q, Principal("ana"), mode="hybrid", k=10)
    t = time.perf_counter()
    for i in range(searches):
        searcher.search(QUERIES[i % len(QUERIES)], Principal("ana"), mode="hybrid", k=10)
    qps = searches / (time.perf_counter() - t)
    coll.close()
    from ragtune.tracing import stage

    t = time.perf_counter()
    for _ in range(20000):
        with stage("embed", texts=1):
            pass
    return {"qps": qps, "span_us": (time.perf_counter() - t) / 20000 * 1e6}


def docs_home() -> tuple[str, int]:
    """A home with this repo's docs/ as collection ``docs`` (public), and its chunk count."""
    from ragtune.collection import Collection
    from ragtune.ingest.sync import ingest
    from ragtune.types import Acl

    home = tempfile.mkdtemp()
    coll = Collection.create(home, "docs")
    chunks = ingest(coll, REPO / "docs", Acl(public=True)).chunks
    coll.close()
    return home, chunks


def tracing_overhead(home: str, chunks: int, rounds: int, searches: int) -> dict:
    receiver = Receiver()
    qps: dict[str, list[float]] = {"off": [], "metrics": [], "otlp": []}
    span_us: dict[str, list[float]] = {a: [] for a in qps}
    for _ in range(rounds):
        for arm in qps:
            out = subprocess.run([sys.executable, __file__, "--arm", arm, "--home", home, "--searches", str(searches),
                                  "--otlp", receiver.url], capture_output=True, text=True, check=True)
            figures = json.loads(out.stdout.strip().splitlines()[-1])
            qps[arm].append(figures["qps"])
            span_us[arm].append(figures["span_us"])
    receiver.http.shutdown()
    med = {a: statistics.median(v) for a, v in qps.items()}
    span = {a: statistics.median(v) for a, v in span_us.items()}
    # A hybrid search without a reranker opens 2 stage spans (embed, store.query).
    search_us = 1e6 / med["off"]
    added = {a: 2 * (span[a] - span["off"]) / search_us for a in ("metrics", "otlp")}
    return {"chunks": chunks, "searches_per_arm": searches, "rounds": rounds, "qps": qps, "qps_median": med,
            "metrics_overhead": 1 - med["metrics"] / med["off"], "otlp_overhead": 1 - med["otlp"] / med["off"],
            "span_us": span, "metrics_overhead_from_spans": added["metrics"], "otlp_overhead_from_spans": added["otlp"],
            "otlp_bytes_received": receiver.bytes}


def mcp_vs_http(home: str, n: int) -> dict:
    import os
    import socket

    import anyio
    import httpx2 as httpx
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    from ragtune.serve.keys import KeyStore

    store = KeyStore(home)
    key = store.create("ana")[0]
    store.close()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "ragtune", "serve", "--port", str(port)],
                            env={**os.environ, "RAGTUNE_HOME": home}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url, headers = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {key}"}
    try:
        for _ in range(300):
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)

        async def run() -> dict[str, list[float]]:
            samples: dict[str, list[float]] = {"http": [], "mcp": []}
            async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as http:
                async with Client(streamable_http_client(url + "/mcp", http_client=http)) as client:
                    for i in range(n + 5):  # the first 5 of each warm up
                        q = QUERIES[i % len(QUERIES)]
                        t = time.perf_counter()
                        r = await http.post("/v1/collections/docs/search", json={"query": q, "k": 5})
                        assert r.status_code == 200
                        http_s = time.perf_counter() - t
                        t = time.perf_counter()
                        res = await client.call_tool("search", {"collection": "docs", "query": q, "k": 5})
                        assert not res.is_error
                        mcp_s = time.perf_counter() - t
                        if i >= 5:
                            samples["http"].append(http_s * 1000)
                            samples["mcp"].append(mcp_s * 1000)
            return samples

        samples = anyio.run(run)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    out = {a: {"p50_ms": statistics.median(v), "p95_ms": sorted(v)[int(0.95 * len(v))]} for a, v in samples.items()}
    out["mcp_over_http_p50"] = out["mcp"]["p50_ms"] / out["http"]["p50_ms"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--auth-requests", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--searches", type=int, default=300)
    ap.add_argument("--mcp-searches", type=int, default=200)
    ap.add_argument("--arm", help=argparse.SUPPRESS)
    ap.add_argument("--home", help=argparse.SUPPRESS)
    ap.add_argument("--otlp", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.arm:
        # An arm's own process: print its figure; the provider flushes the exporter at exit.
        print(json.dumps(search_arm(args.home, args.arm, args.searches, args.otlp)))
        return
    auth = auth_overhead(args.auth_requests)
    home, chunks = docs_home()
    tracing = tracing_overhead(home, chunks, args.rounds, args.searches)
    mcp = mcp_vs_http(home, args.mcp_searches)
    results = {"auth": auth, "tracing": tracing, "mcp": mcp}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "identity.json").write_text(json.dumps(results, indent=2))
    auth_rows = [[a, f"{auth[a]['p50_us']:.1f}", f"{auth[a]['p95_us']:.1f}"] for a in ("api-key", "oidc-jwt")]
    trace_rows = [[a, f"{tracing['qps_median'][a]:.1f}", " / ".join(f"{q:.1f}" for q in tracing["qps"][a]),
                   "" if a == "off" else f"{100 * tracing[f'{a}_overhead']:+.1f}%"] for a in ("off", "metrics", "otlp")]
    body = f"""
## Identifying the caller, per request ({args.auth_requests} requests per arm, interleaved)

{table(["credential", "p50 µs", "p95 µs"], auth_rows)}

An OIDC token costs {auth['jwt_over_key_p50']:.1f}× an API key's lookup at the median (the RS256
signature check dominates; the provider's keys come from the cache, fetched once).

## Tracing and search throughput ({tracing['chunks']} chunks of docs/, hybrid, {args.searches} searches per arm and round, {args.rounds} rounds)

{table(["arm", "queries/s (median)", "per round", "throughput lost vs off"], trace_rows)}

`metrics`: the SDK provider with the server's stage-metrics processor (what `ragtune serve` always
runs); `otlp`: plus the batch exporter to a loopback OTLP receiver ({tracing['otlp_bytes_received']}
bytes received). Target: ≤ 5% lost.

Throughput of whole processes varies more between runs than tracing can cost, so the span itself
is also timed alone in each arm (20,000 spans): {tracing['span_us']['off']:.1f} µs with no provider
(the API's no-op), {tracing['span_us']['metrics']:.1f} µs with the metrics processor,
{tracing['span_us']['otlp']:.1f} µs with OTLP export. A hybrid search opens 2 stage spans, so
tracing adds {100 * tracing['metrics_overhead_from_spans']:.2f}% (metrics) and
{100 * tracing['otlp_overhead_from_spans']:.2f}% (OTLP) to a {1000 / tracing['qps_median']['off']:.1f} ms search.

## MCP vs HTTP search, through a real server ({args.mcp_searches} searches each, interleaved, one client session)

{table(["path", "p50 ms", "p95 ms"], [[a, f"{mcp[a]['p50_ms']:.1f}", f"{mcp[a]['p95_ms']:.1f}"] for a in ("http", "mcp")])}

The MCP tool costs {mcp['mcp_over_http_p50']:.2f}× the HTTP route at the median (JSON-RPC framing
and the SDK's validation around the same route function).
"""
    write_report("identity", "Identity and operations: what auth and tracing cost per request", body)


if __name__ == "__main__":
    main()
