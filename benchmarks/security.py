"""The API under fuzzing, and restricted text that must never reach an outsider.

1. A real `ragtune serve` app (uvicorn on loopback, the packaged models) over a collection with
   public, eng-only and hr-only documents. Schemathesis generates requests from the server's own
   OpenAPI schema (examples, coverage and fuzzing phases; valid and invalid data) with a user key
   and then an admin key. Checks: no 5xx, responses that match the schema, declared content types.
2. Canaries: unique strings planted in hr-only documents. An outsider's key (group eng) asks for
   them every way the API answers: search, ask (extractive and generative), RAG chat, plain chat,
   chat and ask with a LoRA adapter really trained on the hr documents, embeddings, the model
   list; a canary (or the adapter's name) in any reply is a leak.

Run from the repo root:  .venv/bin/python benchmarks/security.py [--max-examples 10]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import CACHE, RESULTS, table, write_report  # noqa: E402

CANARIES = ["ZEBRA-QUARTZ-7781", "MAGNOLIA-FJORD-0042", "COBALT-HERON-5519"]
DOCS = [
    {"id": "leave", "title": "Leave policy", "text": "Employees get 25 days of paid annual leave per year."},
    {"id": "roadmap", "title": "Roadmap", "text": "Project Falcon ships a new search engine in spring.",
     "acl": {"groups": ["eng"]}},
] + [{"id": f"hr-{i}", "title": f"HR case {i}", "acl": {"groups": ["hr"]},
      "text": f"Confidential: the settlement code for the dispute is {c}. Salary bands are attached."}
     for i, c in enumerate(CANARIES)]
QUESTIONS = ["What is the settlement code for the dispute?", "Salary bands and settlement code",
             "confidential dispute settlement", *CANARIES]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(home: Path, port: int):
    import uvicorn

    from ragtune.serve.app import create_app
    from ragtune.serve.state import ServeConfig

    # Short generations: the fuzzer asks for up to 4096 tokens, and the operator's cap bounds them.
    config = ServeConfig(port=port, max_completion_tokens=8, max_queue=64, pipeline=["answer.max_new_tokens=8"])
    server = uvicorn.Server(uvicorn.Config(create_app(home, config), host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    return server, thread


def setup(home: Path, url: str, admin: str) -> None:
    import httpx2 as httpx

    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin}"}, timeout=300) as c:
        for name, extra in (("fz", []), ("fz-gen", ["answer.mode=generative"]), ("fz-admin", [])):
            assert c.post("/v1/collections", json={"name": name, "set": extra}).status_code == 201
            job = c.post(f"/v1/collections/{name}/documents", json={"documents": DOCS, "acl": {"public": True}}).json()["job"]
            while (state := c.get(f"/v1/jobs/{job['id']}").json())["status"] not in ("done", "failed"):
                time.sleep(0.2)
            assert state["status"] == "done", state


def fuzz(url: str, key: str, who: str, collection: str, out: Path, args) -> dict:
    """One schemathesis run with ``key``; path parameters ``name`` and ``doc_id`` are a real
    collection and document half of the time, so requests get past the 404s to the code behind."""
    report = out / f"{who}.ndjson"
    config = out / f"{who}.toml"
    config.write_text(f'[parameters]\n"path.name" = "{collection}"\n"path.doc_id" = "leave"\n')
    cmd = [str(Path(sys.executable).parent / "schemathesis"), "--config-file", str(config), "run", f"{url}/openapi.json",
           "-H", f"Authorization: Bearer {key}", "--checks",
           "not_a_server_error,response_schema_conformance,content_type_conformance",
           "--phases", "examples,coverage,fuzzing", "-n", str(args.max_examples), "--seed", "0",
           "--request-timeout", "120", "--workers", "1", "--report", "ndjson", "--report-ndjson-path", str(report),
           "--exclude-path-regex", "^/v1/keys",  # an admin fuzzing key routes would revoke its own key
           "--suppress-health-check", "all", "--no-shrink"]
    started = time.perf_counter()
    run = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    (out / f"{who}.log").write_text(run.stdout + run.stderr)
    return {"exit_code": run.returncode, "seconds": round(seconds, 1), **summarise(report, run.stdout)}


def summarise(report: Path, stdout: str) -> dict:
    """Cases per operation and failures by check, from schemathesis' NDJSON event stream."""
    cases: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    for line in report.read_text().splitlines() if report.exists() else []:
        event = json.loads(line)
        body = next(iter(event.values())) if len(event) == 1 else event
        if not isinstance(body, dict):
            continue
        recorder = body.get("recorder") or {}
        label = recorder.get("label")
        for interactions in (recorder.get("interactions") or {}).values():
            cases[label] += 1
            response = (interactions or {}).get("response") or {}
            if response.get("status_code"):
                statuses[str(response["status_code"])[0] + "xx"] += 1
        for checks in (recorder.get("checks") or {}).values():
            for check in checks:
                if check.get("status") == "FAILURE":
                    failures[check.get("name", "?")] += 1
    summary_line = next((line for line in stdout.splitlines()[::-1] if re.search(r"\b(passed|failed|error)", line)), "")
    return {"cases": dict(cases), "cases_total": sum(cases.values()), "failures": dict(failures),
            "responses_by_class": dict(statuses), "server_errors": statuses.get("5xx", 0), "summary": summary_line.strip()}


ADAPTER = "hr-canaries"


def train_canary_adapter(home: Path) -> dict:
    """A real LoRA adapter trained on the hr documents (SQuAD-format, scope group:hr recorded as
    `synth answers --scope group:hr` records it), through the CLI as a user would run it."""
    from ragtune.collection import Collection
    from ragtune.synth.scope import write_scope
    from ragtune.types import Scope

    data = home / "hr-canaries.json"
    articles = [{"title": d["title"], "paragraphs": [{"context": d["text"], "qas": [{
        "id": d["id"], "question": "What is the settlement code for the dispute?",
        "answers": [{"text": c, "answer_start": d["text"].index(c)}]}]}]}
        for d, c in zip(DOCS[2:], CANARIES)]
    data.write_text(json.dumps({"version": "1.1", "data": articles}))
    write_scope(data, Scope.of([["group:hr"]]))
    Collection.create(home, "canary-src").close()
    started = time.perf_counter()
    run = subprocess.run([str(Path(sys.executable).parent / "ragtune"), "train", "generator", "-c", "canary-src",
                          "--data", str(data), "--name", ADAPTER, "--max-steps", "2", "--batch-size", "2",
                          "--eval-fraction", "0", "--home", str(home), "--json"], capture_output=True, text=True)
    if run.returncode:
        raise SystemExit(f"training the canary adapter failed:\n{run.stdout}\n{run.stderr}")
    meta = json.loads(run.stdout)
    return {"name": ADAPTER, "scope": meta.get("scope"), "steps": meta.get("steps"),
            "seconds": round(time.perf_counter() - started, 1)}


def canaries(url: str, outsider: str, insider: str) -> dict:
    import httpx2 as httpx

    leaks: Counter[str] = Counter()
    asked: Counter[str] = Counter()
    refused: Counter[str] = Counter()
    found_by_insider = adapter_ok = 0
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {outsider}"}, timeout=300) as c, \
            httpx.Client(base_url=url, headers={"Authorization": f"Bearer {insider}"}, timeout=300) as hr:
        def check(route: str, response, question: str = "") -> None:
            asked[route] += 1  # a canary the question itself carries may be echoed back: not a leak
            leaks[route] += sum(canary in response.text for canary in CANARIES if canary not in question)

        for q in QUESTIONS:
            check("search", c.post("/v1/collections/fz/search", json={"query": q, "k": 20}), q)
            check("ask extractive", c.post("/v1/collections/fz/ask", json={"question": q}), q)
            check("ask generative", c.post("/v1/collections/fz-gen/ask", json={"question": q}), q)
            check("chat rag", c.post("/v1/chat/completions", json={"model": "SmolLM2-135M-Instruct", "collection": "fz",
                                                                     "messages": [{"role": "user", "content": q}]}), q)
            check("chat plain", c.post("/v1/chat/completions", json={"model": "SmolLM2-135M-Instruct",
                                                                       "messages": [{"role": "user", "content": q}]}), q)
            check("documents", c.get("/v1/collections/fz/documents/hr-0"))
            for rag in (None, "fz"):  # the adapter trained on the canaries, asked directly and over RAG
                chat = {"model": ADAPTER, "max_tokens": 8, "messages": [{"role": "user", "content": q}],
                        **({"collection": rag} if rag else {})}
                r = c.post("/v1/chat/completions", json=chat)
                check(f"chat {'rag ' if rag else ''}model={ADAPTER}", r, q)
                refused[f"chat {'rag ' if rag else ''}model={ADAPTER}"] += r.status_code == 404
                adapter_ok += hr.post("/v1/chat/completions", json=chat).status_code == 200
            r = c.post("/v1/collections/fz/ask", json={"question": q, "adapter": ADAPTER})
            check(f"ask adapter={ADAPTER}", r, q)
            refused[f"ask adapter={ADAPTER}"] += r.status_code == 404
            check("embeddings", c.post("/v1/embeddings", json={"model": "all-MiniLM-L6-v2", "input": q}), q)
            check("models", c.get("/v1/models"))
            # The same question from an hr key must find the canary: the test can see a leak.
            found_by_insider += any(canary in hr.post("/v1/collections/fz/search", json={"query": q, "k": 20}).text
                                    for canary in CANARIES)
        listed = ADAPTER in c.get("/v1/models").text
    return {"asked": dict(asked), "leaks": dict(leaks), "leaks_total": sum(leaks.values()),
            "insider_found": found_by_insider, "questions": len(QUESTIONS), "adapter_refused_to_outsider": dict(refused),
            "adapter_served_to_insider": adapter_ok, "adapter_listed_to_outsider": listed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-examples", type=int, default=10, help="schemathesis test cases per operation and phase")
    ap.add_argument("--report", default="security")
    args = ap.parse_args()
    from ragtune.serve.keys import KeyStore

    home = CACHE / "security-home"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    store = KeyStore(home)
    keys = {"admin": store.create("root", role="admin")[0], "user": store.create("erin", groups=["eng"])[0],
            "hr": store.create("hana", groups=["hr"])[0]}
    store.close()
    adapter = train_canary_adapter(home)
    print("canary adapter:", adapter)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server, thread = start_server(home, port)
    for _ in range(600):
        if server.started:
            break
        time.sleep(0.1)
    setup(home, url, keys["admin"])
    leak = {**canaries(url, keys["user"], keys["hr"]), "adapter": adapter}
    print("canaries:", leak)
    # The admin run gets its own collection: the fuzzer may delete or reconfigure it.
    runs = {who: fuzz(url, keys[who], who, coll, home, args) for who, coll in (("user", "fz"), ("admin", "fz-admin"))}
    for who, r in runs.items():
        print(who, {k: v for k, v in r.items() if k != "cases"})
    server.should_exit = True
    thread.join(30)
    write_results(args, runs, leak)


def write_results(args, runs: dict, leak: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.report}.json").write_text(json.dumps({"fuzz": runs, "canaries": leak}, indent=2))
    operations = sorted({op for r in runs.values() for op in r["cases"]})
    per_route = table(["operation", *[f"cases ({w} key)" for w in runs]],
                      [[op, *[r["cases"].get(op, 0) for r in runs.values()]] for op in operations])
    totals = table(["key", "cases", "responses by class", "5xx", "check failures", "seconds", "schemathesis says"],
                   [[w, r["cases_total"], json.dumps(r["responses_by_class"]), r["server_errors"],
                     json.dumps(r["failures"]) or "{}", f"{r['seconds']:.1f}", r["summary"]] for w, r in runs.items()])
    canary_rows = table(["route", "requests", "canaries in replies"],
                        [[route, n, leak["leaks"].get(route, 0)] for route, n in leak["asked"].items()])
    write_report(args.report, "Security: the API under schemathesis, and canaries of restricted text", f"""
A real server (uvicorn on loopback, packaged models, generations capped at 8 tokens) over two
collections with public, eng-only and hr-only documents. Schemathesis {_version()} ran the server's
own OpenAPI schema (phases examples, coverage, fuzzing; valid and invalid data; seed 0; at most
{args.max_examples} cases per operation and phase; `/v1/keys` left out, so the admin run cannot
revoke its own key) with checks `not_a_server_error`, `response_schema_conformance`,
`content_type_conformance`.

{totals}

Cases per operation:

{per_route}

## Canaries

{len(CANARIES)} unique strings in hr-only documents; an eng key asked {leak['questions']} questions aimed at them
through every answering route (a canary the question itself carries and the reply echoes is not
counted). The hr key found them for {leak['insider_found']} of the {leak['questions']} questions
(the probe can see a leak); the eng key's replies held **{leak['leaks_total']}** canaries.

{canary_rows}

The adapter `{leak['adapter']['name']}` is a real LoRA trained on the hr documents ({leak['adapter']['steps']} steps,
{leak['adapter']['seconds']:.0f} s; recorded scope {leak['adapter']['scope']}). The eng key was refused it (404, as if it did
not exist) {sum(leak['adapter_refused_to_outsider'].values())} of {3 * leak['questions']} times; the hr key was served it
{leak['adapter_served_to_insider']} of {2 * leak['questions']} times; listed (or shown as loaded) to the eng key: {leak['adapter_listed_to_outsider']}.
The embeddings endpoint embeds with the server's own embedder only, never a collection's trained one.
Not in this run: an *embedder* trained on the canaries (`adapt --scope group:hr` keeps it a shadow
of the collection, tested in `tests/test_security.py`).
""")


def _version() -> str:
    from importlib.metadata import version

    return version("schemathesis")


if __name__ == "__main__":
    main()
