"""The HTTP server as a client sees it: a real `ragtune serve` process on loopback, real models,
the official `openai` client, and the web UI in headless Chromium."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx2 as httpx
import pytest
from conftest import run_cli

BASE = "SmolLM2-135M-Instruct"
DOCS = [
    {"id": "leave", "title": "Leave policy", "text": "Employees get 25 days of paid annual leave per year. "
     "Unused leave days expire at the end of March."},
    {"id": "salary", "title": "Payroll", "text": "Salaries are paid on the last working day of each month "
     "by bank transfer.", "acl": {"groups": ["finance"]}},
    {"id": "roadmap", "title": "Roadmap", "text": "The secret project Falcon ships a new search engine in the "
     "spring.", "acl": {"groups": ["eng"]}},
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tiny_adapter(home: Path, base_path: str) -> None:
    """A real LoRA adapter with random weights (so its answers differ from the base), registered by name."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from ragtune.models.adapters import AdapterRegistry

    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base_path),
                           LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    registry = AdapterRegistry(home)
    with registry.create("tiny-lora") as out:
        model.save_pretrained(out)
        registry.describe(out, base=BASE, method="lora", data="random weights (test)", scope=[["public"]])
    with registry.create("finance-lora") as out:  # as if trained on finance-only text
        model.save_pretrained(out)
        registry.describe(out, base=BASE, method="lora", data="random weights (test)", scope=[["group:finance"]])
    with registry.create("refused-lora") as out:  # as if its preference gate had refused it
        model.save_pretrained(out)
        registry.describe(out, base=BASE, method="lora", data="random weights (test)", scope=[["public"]],
                          gate={"promote": False, "why": "held-out preference accuracy 0.250 → 0.250"})


class SpanReceiver:
    """An OTLP/HTTP trace receiver on loopback (what a collector, Jaeger or Tempo runs): it decodes
    each export with the OTLP protobuf schema and keeps the span names."""

    def __init__(self):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        self.spans: list[tuple[str, dict]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                request = ExportTraceServiceRequest()
                request.ParseFromString(self.rfile.read(int(self.headers["content-length"])))
                for rs in request.resource_spans:
                    for ss in rs.scope_spans:
                        for span in ss.spans:
                            attrs = {a.key: a.value.int_value or a.value.string_value for a in span.attributes}
                            receiver.spans.append((span.name, attrs))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_port}/v1/traces"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()


class Server:
    def __init__(self, home: Path, port: int, keys: dict[str, str], proc: subprocess.Popen,
                 spans: SpanReceiver | None = None):
        self.home, self.port, self.keys, self.proc, self.spans = home, port, keys, proc, spans
        self.url = f"http://127.0.0.1:{port}"

    def client(self, who: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys[who]}"} if who else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=120)

    def wait_job(self, job_id: str, who: str = "admin") -> dict:
        with self.client(who) as c:
            for _ in range(600):
                job = c.get(f"/v1/jobs/{job_id}").json()
                if job["status"] in ("done", "failed"):
                    return job
                time.sleep(0.1)
        raise AssertionError(f"job {job_id} did not finish: {job}")


@pytest.fixture(scope="module")
def server(tmp_path_factory, local_generator):
    from ragtune.serve.keys import KeyStore

    home = tmp_path_factory.mktemp("serve-home")
    base_dir = home / "models" / "base"
    base_dir.mkdir(parents=True)
    (base_dir / BASE).symlink_to(local_generator.path)  # the session's converted SmolLM2: no second conversion
    _tiny_adapter(home, local_generator.path)
    store = KeyStore(home)
    keys = {"admin": store.create("root", role="admin")[0],
            "eng": store.create("erin", groups=["eng"])[0],
            "finance": store.create("fred", groups=["finance"])[0]}
    revoked, info = store.create("gone")
    store.revoke(info.id)
    keys["revoked"] = revoked
    store.close()
    port = _free_port()
    env = {**os.environ, "RAGTUNE_HOME": str(home), "OTEL_BSP_SCHEDULE_DELAY": "500"}  # export spans twice a second
    spans = SpanReceiver()
    proc = subprocess.Popen([sys.executable, "-m", "ragtune", "serve", "--port", str(port), "--max-queue", "1",
                             "--set", "answer.max_new_tokens=24", "--otlp-endpoint", spans.url], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    srv = Server(home, port, keys, proc, spans)
    for _ in range(300):
        try:
            if httpx.get(srv.url + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    else:
        proc.kill()
        raise AssertionError(f"server did not start:\n{proc.stdout.read()}")
    with srv.client("admin") as c:
        # "hr" asks the local model to write (the generative paths); "hr-read" keeps the default,
        # which with the packaged 135M model is the extractive reader.
        assert c.post("/v1/collections", json={"name": "hr", "set": ["answer.mode=generative"]}).status_code == 201
        assert c.post("/v1/collections", json={"name": "hr-read"}).status_code == 201
        for name in ("hr", "hr-read"):
            r = c.post(f"/v1/collections/{name}/documents", json={"documents": DOCS, "acl": {"public": True}})
            assert r.status_code == 202, r.text
            assert srv.wait_job(r.json()["job"]["id"])["status"] == "done"
    yield srv
    proc.terminate()
    proc.wait(timeout=30)
    spans.http.shutdown()


def _routes(app):
    """(path, method) of every route, descending into included routers."""
    out = []
    for route in app.routes:
        if hasattr(route, "original_router"):
            out += [(r.path, m) for r in route.original_router.routes for m in r.methods]
        else:
            # A mounted ASGI app (MCP's /mcp) takes every method: POST stands for them.
            out += [(route.path, m) for m in (getattr(route, "methods", None) or ("POST",)) if m != "HEAD"]
    return sorted(set(out))


@pytest.mark.slow  # a real server process
def test_every_route_but_the_public_ones_needs_a_valid_key(server, tmp_path):
    from ragtune.serve.app import PUBLIC_PATHS, create_app

    routes = _routes(create_app(tmp_path / "h"))
    assert len(routes) >= 20
    assert not {"/docs", "/redoc"} & {p for p, _ in routes}  # their scripts come from a CDN
    with server.client() as anon, server.client("revoked") as revoked:
        for path, method in routes:
            url = "/".join("x" if part.startswith("{") else part for part in path.split("/"))
            if path in PUBLIC_PATHS:
                assert anon.request(method, url).status_code == 200, url
                continue
            for client in (anon, revoked):
                r = client.request(method, url, json={})
                assert r.status_code == 401, f"{method} {url} answered {r.status_code} without a valid key"
                assert r.json()["error"]["type"] == "unauthorized"
                assert r.headers["www-authenticate"] == "Bearer"


@pytest.mark.slow  # a real server process
def test_auth_comes_before_the_body_and_bodies_are_bounded(server):
    with server.client() as anon, server.client("eng") as eng:
        r = anon.post("/v1/collections/hr/search", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 401  # not a 422 that describes the API to a stranger
        big = b"x" * (20 * 2**20)
        r = anon.post("/v1/collections/hr/search", content=big, headers={"content-type": "application/json"})
        assert r.status_code == 401
        r = eng.post("/v1/collections/hr/search", content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["error"]["type"] == "too_large"

        def chunked():
            for _ in range(20):
                yield b"x" * 2**20

        r = eng.post("/v1/collections/hr/search", content=chunked(), headers={"content-type": "application/json"})
        assert r.status_code == 413  # no Content-Length: counted as it arrives
        assert eng.post("/v1/collections/hr/search", json={"query": "q" * 9000}).status_code == 422
        r = eng.post("/v1/chat/completions", json={"model": BASE, "stop": ["x" * 65],
                                                   "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 422 and "stop" in r.text


@pytest.mark.slow  # a real server process
def test_a_client_that_goes_away_mid_stream_frees_the_model(server):
    body = {"model": BASE, "stream": True, "max_tokens": 2000, "messages": [{"role": "user", "content": "Tell a long story."}]}
    with server.client("eng") as eng:
        with eng.stream("POST", "/v1/chat/completions", json=body) as r:
            assert r.status_code == 200
            next(r.iter_lines())
        started = time.perf_counter()  # the connection is closed here
        r = eng.post("/v1/chat/completions", json={"model": BASE, "max_tokens": 4,
                                                   "messages": [{"role": "user", "content": "Hi"}]})
        assert r.status_code == 200, r.text
        assert time.perf_counter() - started < 40  # 2000 tokens would hold the model for minutes


def _scrape(client: httpx.Client) -> dict[tuple[str, tuple], float]:
    from prometheus_client.parser import text_string_to_metric_families

    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def _value(scraped: dict, name: str, **labels) -> float:
    return scraped.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.mark.slow  # a real server process
def test_metrics_move_with_traffic_and_stage_spans_reach_the_otlp_collector(server):
    search = "/v1/collections/{name}/search"
    with server.client("admin") as adm, server.client("eng") as eng, server.client() as anon:
        assert eng.get("/metrics").status_code == 403  # every user's traffic: admins only
        before = _scrape(adm)
        for _ in range(3):
            assert eng.post("/v1/collections/hr-read/search", json={"query": "leave days", "mode": "hybrid"}).status_code == 200
        assert eng.post("/v1/collections/hr-read/ask", json={"question": "How many leave days?"}).status_code == 200
        assert anon.post("/v1/collections/hr-read/search", json={"query": "x"}).status_code == 401
        after = _scrape(adm)
    moved = lambda name, **labels: _value(after, name, **labels) - _value(before, name, **labels)  # noqa: E731
    assert moved("ragtune_http_requests_total", method="POST", route=search, status="200") == 3
    assert moved("ragtune_http_requests_total", method="POST", route="unauthenticated", status="401") == 1
    assert moved("ragtune_http_request_seconds_count", route=search) == 3
    assert moved("ragtune_stage_seconds_count", stage="embed") >= 4  # 3 searches + the ask's retrieval
    assert moved("ragtune_stage_seconds_count", stage="store.query") >= 4
    assert moved("ragtune_stage_seconds_count", stage="read") == 1  # hr-read answers with the extractive reader
    assert moved("ragtune_stage_seconds_sum", stage="read") > 0
    assert _value(after, "ragtune_model_loads_total", kind="collection") >= 1
    assert ("ragtune_queue_depth", (("gate", "encoders"),)) in after
    assert _value(after, "ragtune_ingest_jobs", status="queued") == 0
    names = set()
    for _ in range(100):  # the exporter sends in batches
        names = {n for n, _ in server.spans.spans}
        if {"embed", "store.query", "read"} <= names:
            break
        time.sleep(0.1)
    assert {"embed", "store.query", "read"} <= names, names
    assert any(n == "store.query" and a.get("mode") == "hybrid" for n, a in server.spans.spans)


def _mcp_calls(url: str, headers: dict[str, str], calls: list[tuple[str, dict]]) -> tuple[list[str], list]:
    """Tool names, then each call's (is_error, structured result or error text), through the SDK's client."""
    import anyio
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    async def run():
        async with httpx.AsyncClient(headers=headers, timeout=120) as http:
            async with Client(streamable_http_client(url, http_client=http)) as client:
                tools = sorted(t.name for t in (await client.list_tools()).tools)
                out = []
                for name, args in calls:
                    r = await client.call_tool(name, args)
                    text = r.content[0].text
                    out.append((r.is_error, text if r.is_error else r.structured_content or json.loads(text)))
                return tools, out

    return anyio.run(run)


@pytest.mark.slow  # a real server process
def test_mcp_tools_answer_as_the_callers_principal(server):
    calls = [("search", {"collection": "hr-read", "query": "When are salaries paid?", "k": 5}),
             ("list_collections", {}),
             ("get_document", {"collection": "hr-read", "doc_id": "salary"}),
             ("ask", {"collection": "hr-read", "question": "How many days of paid annual leave?"}),
             ("search", {"collection": "nope", "query": "x"})]
    seen = {}
    for who in ("eng", "finance"):
        tools, results = _mcp_calls(server.url + "/mcp", {"Authorization": f"Bearer {server.keys[who]}"}, calls)
        assert tools == ["ask", "get_document", "list_collections", "search"]
        seen[who] = results
    hits = {who: {h["doc_id"] for h in seen[who][0][1]["hits"]} for who in seen}
    assert "salary" in hits["finance"] and "salary" not in hits["eng"]  # the ACL of the caller's key
    assert seen["finance"][2][0] is False and seen["finance"][2][1]["id"] == "salary"
    assert seen["eng"][2][0] and seen["eng"][2][1].endswith(": document not found")  # as a missing one
    assert "25" in seen["eng"][3][1]["text"] and seen["eng"][3][1]["citations"]
    assert seen["eng"][4][0] and seen["eng"][4][1].endswith(": collection not found")  # not the others' names
    with httpx.Client() as anon:  # the guard answers before MCP reads anything
        r = anon.post(server.url + "/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert r.status_code == 401


@pytest.mark.slow  # real subprocesses and the real embedder
def test_mcp_over_stdio_acts_as_the_keys_principal(tmp_path):
    import anyio
    from mcp import Client, StdioServerParameters

    from ragtune.serve.keys import KeyStore

    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "leave.md").write_text("# Leave\n\nEmployees get 25 days of paid annual leave per year.\n")
    home = tmp_path / "home"
    run_cli("ingest", str(tmp_path / "notes"), "-c", "notes", "--public", home=home)
    store = KeyStore(home)
    key = store.create("ana")[0]
    store.close()
    env = {**os.environ, "RAGTUNE_HOME": str(home)}

    async def run(secret: str):
        params = StdioServerParameters(command=sys.executable, args=["-m", "ragtune", "mcp"],
                                       env={**env, "RAGTUNE_API_KEY": secret})
        async with Client(params) as client:
            r = await client.call_tool("search", {"collection": "notes", "query": "paid leave days", "k": 3})
            return r.structured_content or json.loads(r.content[0].text)

    hits = anyio.run(run, key)["hits"]
    assert hits and hits[0]["doc_id"].endswith("leave.md") and "25 days" in hits[0]["text"]
    refused = run_cli("mcp", "--key", "rt_unknown", home=home, check=False, input="")
    assert refused.returncode != 0 and "unknown or revoked" in refused.stderr


@pytest.mark.slow  # a real server process
def test_a_user_key_sees_counts_of_what_it_may_read_and_no_server_paths(server):
    with server.client("eng") as eng, server.client("finance") as fin, server.client("admin") as adm:
        listed = {c["name"]: c for c in eng.get("/v1/collections").json()["collections"]}
        assert listed["hr-read"]["documents"] == 2  # leave + roadmap, not the finance-only payroll
        assert {c["name"]: c for c in fin.get("/v1/collections").json()["collections"]}["hr-read"]["documents"] == 2
        assert "last_run" not in listed["hr-read"] and str(server.home) not in eng.get("/v1/collections").text
        assert str(server.home) not in eng.get("/v1/collections/hr-read").text
        assert adm.get("/v1/collections/hr-read").json()["stats"]["documents"] == 3


@pytest.mark.slow  # a real server process
def test_admin_configures_a_collection_like_the_cli(server):
    with server.client("admin") as admin, server.client("eng") as eng:
        assert admin.post("/v1/collections", json={"name": "cfg"}).status_code == 201
        r = admin.patch("/v1/collections/cfg", json={"set": ["query.k=3"]})
        assert r.status_code == 200 and r.json()["changed"] == {"query.k": {"old": 10, "new": 3}}
        assert admin.get("/v1/collections/cfg").json()["pipeline"]["query"]["k"] == 3
        refused = admin.patch("/v1/collections/cfg", json={"set": ["chunking.chunk_size=64"]})
        assert refused.status_code == 400 and "built with different chunking" in refused.json()["error"]["message"]
        assert eng.patch("/v1/collections/cfg", json={"set": ["query.k=4"]}).status_code == 403
        assert admin.delete("/v1/collections/cfg").status_code == 200


@pytest.mark.slow  # a real server process
def test_store_secrets_are_never_shown_or_written_to_pipeline_yaml(server):
    with server.client("admin") as admin, server.client("eng") as eng:
        r = admin.post("/v1/collections", json={"name": "sec", "set": ["store.backend=qdrant", "store.api_key=k3y-value"]})
        assert r.status_code == 201, r.text
        try:
            for client in (eng, admin):
                shown = client.get("/v1/collections/sec")
                assert shown.status_code == 200 and "k3y-value" not in shown.text
                assert shown.json()["pipeline"]["store"]["api_key"] == "***"
            assert "k3y-value" not in admin.patch("/v1/collections/sec", json={"set": ["query.k=3"]}).text
            assert "k3y-value" not in (server.home / "collections" / "sec" / "pipeline.yaml").read_text()
        finally:
            assert admin.delete("/v1/collections/sec").status_code == 200


@pytest.mark.slow  # a real server process
def test_roles_and_hidden_existence(server):
    with server.client("eng") as eng, server.client("finance") as fin, server.client("admin") as adm:
        assert eng.post("/v1/collections", json={"name": "mine"}).status_code == 403
        assert eng.delete("/v1/collections/hr/documents/leave").status_code == 403
        assert eng.post("/v1/keys", json={"user": "x"}).status_code == 403
        assert eng.get("/v1/collections/nope").status_code == 404
        # a document the key may not see answers exactly like one that does not exist
        hidden, missing = eng.get("/v1/collections/hr/documents/salary"), eng.get("/v1/collections/hr/documents/nope")
        assert hidden.status_code == missing.status_code == 404
        assert hidden.json()["error"]["message"] == missing.json()["error"]["message"]
        assert fin.get("/v1/collections/hr/documents/salary").json()["title"] == "Payroll"
        assert "acl" not in fin.get("/v1/collections/hr/documents/salary").json()
        assert adm.get("/v1/collections/hr/documents/salary").json()["acl"]["groups"] == ["finance"]
        assert eng.get("/v1/me").json() == {"user": "erin", "groups": ["eng"], "role": "user",
                                            "key_id": eng.get("/v1/me").json()["key_id"]}


@pytest.mark.slow  # a real server process
def test_acl_isolation_through_search_and_ask(server):
    with server.client("eng") as eng, server.client("finance") as fin:
        q = {"query": "when are salaries paid and what ships in spring", "k": 10}
        eng_docs = {h["doc_id"] for h in eng.post("/v1/collections/hr/search", json=q).json()["hits"]}
        fin_docs = {h["doc_id"] for h in fin.post("/v1/collections/hr/search", json=q).json()["hits"]}
        assert eng_docs == {"leave", "roadmap"} and fin_docs == {"leave", "salary"}
        ans = eng.post("/v1/collections/hr-read/ask", json={"question": "When are salaries paid?"}).json()
        assert all(c["doc_id"] != "salary" for c in ans["citations"])
        assert "last working day" not in ans["text"] and all("last working day" not in p for p in ans["passages"])


@pytest.mark.slow  # a real server process
def test_a_scheduled_source_stays_in_sync_and_reports_its_status(server, tmp_path):
    share = tmp_path / "share"
    share.mkdir()
    (share / "canteen.md").write_text("# Canteen\n\nThe canteen serves soup on Thursdays.")
    with server.client("admin") as adm, server.client("eng") as eng:
        assert adm.post("/v1/collections", json={"name": "synced"}).status_code == 201
        body = {"name": "share", "type": "folder", "options": {"path": str(share)}, "acl": {"groups": ["eng"]}, "every_s": 1}
        assert eng.post("/v1/collections/synced/sources", json=body).status_code == 403
        bad = adm.post("/v1/collections/synced/sources", json={**body, "options": {"path": str(share), "depth": 3}})
        assert bad.status_code == 400 and "unknown option(s) ['depth']" in bad.json()["error"]["message"]
        assert adm.post("/v1/collections/synced/sources", json=body).status_code == 201
        assert adm.post("/v1/collections/synced/sources", json=body).status_code == 409

        def found(query: str) -> set[str]:
            hits = eng.post("/v1/collections/synced/search", json={"query": query, "k": 3}).json()["hits"]
            return {h["doc_id"] for h in hits}

        def eventually(check, timeout: float = 60.0):
            deadline = time.monotonic() + timeout
            while not check():
                assert time.monotonic() < deadline, "the scheduler did not sync in time"
                time.sleep(0.2)

        # Nobody asks for a sync: the server's scheduler runs it (every_s=1, a tick every 5 s).
        eventually(lambda: "share/canteen.md" in found("soup on Thursdays"))
        (share / "gym.md").write_text("# Gym\n\nThe gym opens at six in the morning.")
        eventually(lambda: "share/gym.md" in found("gym opening hours"))
        (share / "canteen.md").unlink()
        eventually(lambda: "share/canteen.md" not in found("soup on Thursdays"))
        status = adm.get("/v1/collections/synced/sources").json()["sources"][0]
        assert status["name"] == "share" and status["syncs"] >= 3 and status["last_error"] is None
        assert status["lag_s"] is not None and status["lag_s"] < 30

        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as EC
        from selenium.webdriver.support.ui import Select

        with chromium() as (driver, wait):  # the admin's view of the source, and "Sync now"
            driver.get(server.url + "/")
            driver.find_element(By.ID, "key").send_keys(server.keys["admin"])
            driver.find_element(By.ID, "signin").click()
            wait.until(lambda d: "synced" in [o.text for o in Select(d.find_element(By.ID, "collection")).options])
            Select(driver.find_element(By.ID, "collection")).select_by_visible_text("synced")
            row = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#sources tr[data-source='share']")))
            assert "folder" in row.text and "every 1 s" in row.text
            row.find_element(By.CLASS_NAME, "sync-now").click()
            wait.until(EC.text_to_be_present_in_element((By.ID, "sources-status"), "share: 0 new"))
            wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, "#sources tr[data-source='share']"), "ago"))

        job = adm.post("/v1/collections/synced/sources/share/sync").json()  # on demand too
        done = server.wait_job(job["id"])
        assert done["status"] == "done" and done["result"]["unchanged"] == 1 and done["result"]["indexed"] == 0
        assert adm.post("/v1/collections/synced/sources/nope/sync").status_code == 404
        removed = adm.delete("/v1/collections/synced/sources/share").json()
        assert removed["documents_deleted"] == 1 and found("gym opening hours") == set()
        assert adm.delete("/v1/collections/synced").status_code == 200


@pytest.mark.slow  # a real server process
def test_upload_files_job_progress_then_search_and_delete(server, tmp_path):
    files = {"wifi.md": "# Wi-Fi\n\nThe guest Wi-Fi password rotates every Monday.",
             "parking.txt": "Parking spaces on level 2 are reserved for car pools."}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "broken.pdf").write_bytes(b"not a pdf at all")
    with server.client("admin") as adm, server.client("eng") as eng:
        upload = [("files", (n, (tmp_path / n).read_bytes())) for n in [*files, "broken.pdf"]]
        r = adm.post("/v1/collections/hr/documents", files=upload, data={"acl": json.dumps({"groups": ["eng"]})})
        assert r.status_code == 202, r.text
        assert r.json()["job"]["files"] == ["wifi.md", "parking.txt", "broken.pdf"]  # names, not server paths
        job = server.wait_job(r.json()["job"]["id"])
        assert job["status"] == "done" and job["result"]["indexed"] == 2 and job["result"]["failed"] == 1
        assert job["result"]["failures"][0]["source"] == "broken.pdf"  # one bad file does not stop the batch
        assert job["progress"] == {"event": "files", "done": 3, "total": 3}
        assert eng.get(f"/v1/jobs/{job['id']}").status_code == 404  # another key's job
        hits = eng.post("/v1/collections/hr/search", json={"query": "guest wifi password", "k": 1}).json()["hits"]
        assert hits[0]["doc_id"] == "wifi.md" and hits[0]["source"] == "wifi.md"
        stats = adm.get("/v1/collections/hr").json()["stats"]
        assert stats["documents"] == 5 and stats["chunks_in_store"] == stats["chunks"]
        no_acl = adm.post("/v1/collections/hr/documents", files=upload[:1])
        assert no_acl.status_code == 400 and "acl" in no_acl.json()["error"]["message"]
        assert adm.delete("/v1/collections/hr/documents/wifi.md").status_code == 200
        assert adm.delete("/v1/collections/hr/documents/wifi.md").status_code == 404
        hits = eng.post("/v1/collections/hr/search", json={"query": "guest wifi password", "k": 3}).json()["hits"]
        assert "wifi.md" not in {h["doc_id"] for h in hits}
        assert not (server.home / "uploads" / "hr" / "files" / "wifi.md").exists()


@pytest.mark.slow  # a real server process
def test_openai_client_chat_streaming_rag_embeddings_models(server):
    from openai import NotFoundError, OpenAI

    client = OpenAI(base_url=server.url + "/v1", api_key=server.keys["finance"])
    ids = {m.id for m in client.models.list().data}
    assert {BASE, "all-MiniLM-L6-v2", "tiny-lora"} <= ids
    stream = client.chat.completions.create(model=BASE, messages=[{"role": "user", "content": "When are salaries paid?"}],
                                            stream=True, max_tokens=24, extra_body={"collection": "hr"})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    final = chunks[-1].model_extra
    assert text.strip() and chunks[-1].choices[0].finish_reason == "stop"
    assert "citations" in final and final["answer_id"]
    plain = client.chat.completions.create(model=BASE, messages=[{"role": "user", "content": "Say hello."}], max_tokens=8)
    assert plain.choices[0].message.content and plain.usage.completion_tokens <= 8
    rag = client.chat.completions.create(model=BASE, messages=[{"role": "user", "content": "When are salaries paid?"}],
                                         max_tokens=24, extra_body={"collection": "hr-read"})
    assert "last working day" in rag.choices[0].message.content
    assert [c["doc_id"] for c in rag.model_extra["citations"]] == ["salary"]
    emb = client.embeddings.create(model="all-MiniLM-L6-v2", input=["leave days", "annual leave"])
    assert len(emb.data) == 2 and len(emb.data[0].embedding) == 384
    with pytest.raises(NotFoundError):
        client.chat.completions.create(model="no-such-adapter", messages=[{"role": "user", "content": "hi"}])


@pytest.mark.slow  # a real server process
def test_ask_loads_registered_adapters_only(server):
    with server.client("eng") as eng:
        for name in (str(server.home / "models" / "base" / BASE), "../models/base/" + BASE, "no-such-adapter"):
            r = eng.post("/v1/collections/hr/ask", json={"question": "How many leave days?", "adapter": name})
            assert r.status_code == 404 and r.json()["error"]["type"] == "model_not_found", name
        r = eng.post("/v1/collections/hr/ask", json={"question": "How many leave days?", "adapter": "tiny-lora"})
        assert r.status_code == 200, r.text  # a registered name still works
        r = eng.post("/v1/collections/hr/ask", json={"question": "How many leave days?", "adapter": "refused-lora"})
        assert r.status_code == 404 and "refused by its gate" in r.json()["error"]["message"]
        listed = {m["id"] for m in eng.get("/v1/models").json()["data"]}
        assert "tiny-lora" in listed and "refused-lora" not in listed


@pytest.mark.slow  # a real server process
def test_an_adapter_serves_only_principals_inside_its_training_scope(server):
    chat = {"model": "finance-lora", "max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}]}
    with server.client("eng") as eng, server.client("finance") as fin, server.client("admin") as adm:
        assert "finance-lora" not in {m["id"] for m in eng.get("/v1/models").json()["data"]}
        assert "finance-lora" in {m["id"] for m in fin.get("/v1/models").json()["data"]}
        r = eng.post("/v1/chat/completions", json=chat)
        assert r.status_code == 404 and r.json()["error"]["type"] == "model_not_found"  # as if it did not exist
        r = eng.post("/v1/collections/hr/ask", json={"question": "How many leave days?", "adapter": "finance-lora"})
        assert r.status_code == 404
        assert fin.post("/v1/chat/completions", json=chat).status_code == 200
        assert adm.post("/v1/chat/completions", json=chat).status_code == 200
        assert "finance-lora" in fin.get("/v1/models").json()["loaded"]
        assert "finance-lora" not in eng.get("/v1/models").text  # nor among the loaded models


@pytest.mark.slow  # a real server process
def test_adapter_is_chosen_per_request_and_never_mixed(server):
    def ask(model: str) -> str:
        with server.client("eng") as c:
            r = c.post("/v1/chat/completions", json={"model": model, "max_tokens": 12,
                                                     "messages": [{"role": "user", "content": "Name a colour."}]})
            assert r.status_code == 200, r.text
            return r.json()["choices"][0]["message"]["content"]

    alone = {m: ask(m) for m in (BASE, "tiny-lora")}
    assert alone[BASE] != alone["tiny-lora"]  # the adapter really changes the model
    results: dict[str, list[str]] = {BASE: [], "tiny-lora": []}
    # max-queue is 1 on this server: two at a time per model fit, a burst would be turned away
    threads = [threading.Thread(target=lambda m=m: results[m].append(ask(m))) for m in (BASE, "tiny-lora")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {m: [alone[m]] for m in alone}


@pytest.mark.slow  # a real server process
def test_full_queue_answers_503_with_retry_after(server):
    statuses, retry = [], []

    def call():
        with server.client("eng") as c:
            r = c.post("/v1/chat/completions", json={"model": BASE, "max_tokens": 96,
                                                     "messages": [{"role": "user", "content": "Write a long story."}]})
            statuses.append(r.status_code)
            if r.status_code == 503:
                retry.append(r.headers.get("retry-after"))

    start = threading.Barrier(6)  # all six are sent together; each generation outlasts the burst
    threads = [threading.Thread(target=lambda: (start.wait(), call())) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses.count(200) >= 2 and statuses.count(503) >= 1 and set(statuses) <= {200, 503}
    assert all(r and int(r) > 0 for r in retry)


@pytest.mark.slow  # a real server process
def test_feedback_round_trip_and_export(server, tmp_path):
    with server.client("finance") as fin, server.client("eng") as eng:
        a = fin.post("/v1/collections/hr-read/ask", json={"question": "When are salaries paid?"}).json()
        b = fin.post("/v1/collections/hr-read/ask", json={"question": "When are salaries paid?", "k": 1}).json()
        assert eng.post("/v1/feedback", json={"answer_id": a["id"], "rating": "up"}).status_code == 404
        assert fin.post("/v1/feedback", json={"answer_id": a["id"]}).status_code == 400
        assert fin.post("/v1/feedback", json={"answer_id": a["id"], "rating": "down",
                                              "correction": "on the last working day of each month"}).status_code == 201
        assert fin.post("/v1/feedback", json={"answer_id": b["id"], "rating": "up",
                                              "preferred_over": a["id"]}).status_code == 201
    out = tmp_path / "export"
    counts = json.loads(run_cli("feedback", "export", "--out", str(out), "--json", home=server.home).stdout)
    # b (rated up, with citations) is a labelled retrieval query; a and b are KTO rows unless they
    # are the same answer text, rated both ways: then neither is (no label is guessed).
    assert {k: counts[k] for k in ("feedback", "squad", "preferences")} == {"feedback": 2, "squad": 2, "preferences": 2}
    assert counts["kto"] == (0 if a["text"] == b["text"] else 2)
    assert counts["labelled_queries"] == {"hr-read": {"train": 1, "test": 0}}
    from ragtune.data.beir import load_beir
    from ragtune.data.squad import load_squad

    labelled = load_beir(out / "retrieval" / "hr-read", "train")
    assert list(labelled.queries.values()) == ["When are salaries paid?"]
    assert set(next(iter(labelled.qrels.values()))) == {c["chunk_id"] for c in b["citations"]}

    squad = {ex.answers[0] for ex in load_squad(out / "squad.json")}
    assert "on the last working day of each month" in squad
    pairs = [json.loads(line) for line in (out / "preferences.jsonl").read_text().splitlines()]
    assert {p["source"] for p in pairs} == {"correction", "a/b"}
    assert pairs[0]["chosen"] == "on the last working day of each month" and pairs[0]["rejected"] == a["text"]


@contextmanager
def chromium():
    """Debian's headless Chromium through its chromedriver: (driver, a 60 s wait)."""
    binary = Path("/usr/bin/chromium")
    if not binary.exists():
        if os.environ.get("CI"):
            raise AssertionError("CI must install Debian's chromium and chromium-driver (scripts/ensure-system-packages.sh)")
        pytest.skip("Debian chromium is not installed here")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(binary)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    try:
        yield driver, WebDriverWait(driver, 60)
    finally:
        driver.quit()


@pytest.mark.slow  # a real server process
def test_web_ui_sign_in_ask_cite_and_feedback(server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import Select

    with chromium() as (driver, wait):
        driver.get(server.url + "/")
        driver.find_element(By.ID, "key").send_keys("rt_wrong")
        driver.find_element(By.ID, "signin").click()
        wait.until(EC.text_to_be_present_in_element((By.ID, "signin-error"), "not valid"))
        key = driver.find_element(By.ID, "key")
        key.clear()
        key.send_keys(server.keys["finance"])
        driver.find_element(By.ID, "signin").click()
        wait.until(EC.text_to_be_present_in_element((By.ID, "who"), "fred"))
        assert not driver.find_element(By.ID, "upload-box").is_displayed()  # not an admin
        wait.until(lambda d: "hr-read" in [o.text for o in Select(d.find_element(By.ID, "collection")).options])
        Select(driver.find_element(By.ID, "collection")).select_by_visible_text("hr-read")
        driver.find_element(By.ID, "question").send_keys("When are salaries paid?")
        driver.find_element(By.ID, "ask-btn").click()
        citation = wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, "#citations .citation")))
        answer = driver.find_element(By.ID, "answer").text
        assert "Payroll" in citation.text and "last working day" in answer
        assert "extractive reader sentence-baseline" in driver.find_element(By.ID, "answered-by").text
        citation.click()
        # The answer is checked against its source: the cited passage holds it, highlighted.
        passage = driver.find_element(By.ID, "passage-view")
        assert "bank transfer" in passage.text and answer in passage.text
        assert passage.find_element(By.TAG_NAME, "mark").text == answer
        driver.find_element(By.ID, "thumb-up").click()
        wait.until(EC.text_to_be_present_in_element((By.ID, "feedback-status"), "saved"))
        driver.find_element(By.ID, "search-q").send_keys("annual leave")
        driver.find_element(By.ID, "search-btn").click()
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#results .hit mark")))
        driver.save_screenshot(str(server.home / "ui.png"))
    from ragtune.feedback import FeedbackStore

    rows = FeedbackStore(server.home).rows()
    assert any(r["rating"] == "up" and r["user"] == "fred" and "last working day" in r["answer"]["answer"] for r in rows)


@pytest.mark.slow  # a real server process
def test_the_admin_sees_the_flywheel_history_users_do_not(server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC

    with server.client("admin") as adm, server.client("eng") as eng:
        data = adm.get("/v1/collections/hr-read/flywheel").json()
        assert data["runs"] == [] and data["series"] == [] and data["worker_every_minutes"] is None
        assert eng.get("/v1/collections/hr-read/flywheel").status_code == 403
    with chromium() as (driver, wait):
        driver.get(server.url + "/")
        driver.find_element(By.ID, "key").send_keys(server.keys["admin"])
        driver.find_element(By.ID, "signin").click()
        wait.until(EC.text_to_be_present_in_element((By.ID, "flywheel-status"), "0 runs"))
        assert "ragtune flywheel -c" in driver.find_element(By.ID, "flywheel-status").text
        assert "No runs yet" in driver.find_element(By.ID, "flywheel-runs").text


def test_embedding_micro_batches_concurrent_requests_with_identical_vectors(tiny_embedder):
    import numpy as np

    from ragtune.config import EmbedderConfig
    from ragtune.models.embedder import Embedder
    from ragtune.serve.engines import BatchingEmbedder

    embedder = Embedder(EmbedderConfig(model=tiny_embedder))

    batcher = BatchingEmbedder(embedder, window_ms=20)
    texts = [f"question number {i} about annual leave" for i in range(16)]
    got: dict[int, np.ndarray] = {}
    threads = [threading.Thread(target=lambda i=i: got.__setitem__(i, batcher.embed_query(texts[i]))) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert batcher.texts == 16 and batcher.batches < 16
    direct = embedder.embed_queries(texts)
    assert all(np.allclose(got[i], direct[i], atol=1e-5) for i in range(16))


def test_token_counts_and_documents_beside_batched_queries_never_break_a_batch(tiny_embedder):
    # Under 32 clients the extractive reader counted tokens with the embedder's tokenizer while the
    # batcher encoded queries with it: a fast tokenizer's padding state flipped mid-batch (500s).
    import numpy as np

    from ragtune.config import EmbedderConfig
    from ragtune.models.embedder import Embedder
    from ragtune.serve.engines import BatchingEmbedder

    embedder = Embedder(EmbedderConfig(model=tiny_embedder))
    batcher = BatchingEmbedder(embedder, window_ms=1)
    texts = [" ".join(["leave"] * (1 + i % 23)) + f" question {i}" for i in range(40)]
    direct = embedder.embed_queries(texts)
    errors: list[BaseException] = []

    def worker(w: int) -> None:
        try:
            for n in range(150):
                i = (w * 7 + n) % len(texts)
                if w % 2:
                    assert len(batcher.tokenizer(texts[i], add_special_tokens=False)["input_ids"]) > 0
                    batcher.embed_documents(texts[i:i + 3])
                else:
                    assert np.allclose(batcher.embed_query(texts[i]), direct[i], atol=1e-5)
        except BaseException as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    import sys

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often: the race shows within a few hundred calls
    try:
        threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert not errors, errors[:3]


def test_malloc_arenas_are_capped_unless_the_environment_chose():
    # In child processes: the cap is process-wide, and the environment variable is read by glibc at start.
    import os
    import subprocess
    import sys

    code = "from ragtune.serve.memory import cap_malloc_arenas as c; print(c(2), c(0))"
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    run = lambda e: subprocess.run([sys.executable, "-c", code], env=e, capture_output=True, text=True,  # noqa: E731
                                   check=True).stdout.split()
    assert run(env) == (["True", "False"] if sys.platform == "linux" else ["False", "False"])
    assert run({**env, "MALLOC_ARENA_MAX": "4"}) == ["False", "False"]


def test_gate_runs_one_at_a_time_and_turns_away_past_the_queue():
    from ragtune.serve.engines import Busy, Gate

    # Events, not sleeps: the order of arrivals is forced, so a loaded machine cannot reorder them.
    gate, inside, peak = Gate("m", max_waiting=1), [0], [0]
    held, release = threading.Event(), threading.Event()

    def work():
        with gate.hold():
            inside[0] += 1
            peak[0] = max(peak[0], inside[0])
            held.set()
            release.wait(timeout=30)
            inside[0] -= 1

    first, second = threading.Thread(target=work), threading.Thread(target=work)
    first.start()
    assert held.wait(timeout=30)  # one call runs ...
    second.start()
    deadline = time.monotonic() + 30
    while gate.occupancy < 2:  # ... and one is queued behind it
        assert time.monotonic() < deadline, "the second call never reached the gate"
        time.sleep(0.005)
    refused = []
    for _ in range(2):  # the queue is full: these are turned away at once, with a retry hint
        try:
            with gate.hold():
                raise AssertionError("a call past the queue got in")
        except Busy as e:
            refused.append(e.retry_after)
    release.set()
    first.join()
    second.join()
    assert peak[0] == 1 and len(refused) == 2 and all(r > 0 for r in refused) and gate.occupancy == 0


def test_reader_forward_passes_are_gated_across_collections(home, make_tiny_collection):
    """Every collection's reader goes through the server's one encoder gate: while one read runs,
    queued reads wait and reads past the queue are turned away (503) instead of each allocating
    its own activations (what grew RSS 2.1 → 4.6 GB under 32 concurrent calls)."""
    from ragtune.serve.engines import Busy, GatedReader
    from ragtune.serve.state import ServeConfig, ServerState

    for name in ("a", "b"):
        make_tiny_collection(name).close()
    srv = ServerState(home, ServeConfig(max_queue=0))
    try:
        readers = [srv.reader(srv.handle(n)) for n in ("a", "b")]
        assert all(isinstance(r, GatedReader) and r.gate is srv.encoders for r in readers)
        running, release = threading.Event(), threading.Event()

        class Slow:  # stands in for the model: holds the gate until released
            name, context_window = "slow", 1000

            def read(self, question, passages):
                running.set()
                release.wait(timeout=30)
                return None

        readers[0].inner = Slow()
        first = threading.Thread(target=readers[0].read, args=("q", ["p"]))
        first.start()
        assert running.wait(timeout=30)
        with pytest.raises(Busy):
            readers[1].read("another collection's question", ["a passage to read"])
        release.set()
        first.join()
        assert readers[1].read("When?", ["It opened in 1889."]) is not None  # the gate is free again
    finally:
        srv.close()
