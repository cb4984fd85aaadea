"""Shared fixtures. Everything is real: the packaged MiniLM, Qdrant Edge on disk, subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def embedder():
    """The real default embedder, loaded once for the whole session (the loader caches it)."""
    from ragtune.config import EmbedderConfig
    from ragtune.models.embedder import Embedder

    return Embedder(EmbedderConfig())


HANDBOOK = {
    "leave.md": "# Leave\n\nEmployees get 25 days of paid annual leave per year. Unused days expire in March.",
    "travel.md": "# Travel\n\nBook trains for trips shorter than four hours. Flights need manager approval.",
    "laptops.md": "# Laptops\n\nLaptops are replaced every three years by the IT service desk.",
}


def _handbook(folder: Path, coll):
    from ragtune.ingest.sync import ingest
    from ragtune.types import Acl

    folder.mkdir()
    for name, text in HANDBOOK.items():
        (folder / name).write_text(text)
    ingest(coll, folder, Acl(groups=("staff",)))
    return coll


@pytest.fixture
def handbook(tmp_path, make_collection):
    """Collection "hb": three short policy pages visible to the group "staff" only."""
    return _handbook(tmp_path / "hb", make_collection("hb"))


@pytest.fixture
def tiny_handbook(tmp_path, make_tiny_collection):
    """The handbook on the tiny random embedder: for tests of the answer path's plumbing. Hybrid
    search still puts the one page a question's words match first (it alone has a BM25 rank)."""
    return _handbook(tmp_path / "hb", make_tiny_collection("hb"))


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def make_collection(home, embedder):
    """Create a collection under the test's home, closed at the end of the test."""
    from ragtune.collection import Collection
    from ragtune.config import PipelineConfig

    opened = []

    def make(name: str = "test", overrides: list[str] | None = None) -> Collection:
        coll = Collection.create(home, name, PipelineConfig().with_overrides(overrides), exist_ok=True)
        opened.append(coll)
        return coll

    yield make
    for coll in opened:
        coll.close()


def run_cli(*args: str, home: Path, check: bool = True, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """Run the real `ragtune` CLI in a separate process."""
    env = {**os.environ, "RAGTUNE_HOME": str(home)}
    proc = subprocess.run(
        [sys.executable, "-m", "ragtune", *args], capture_output=True, text=True, env=env, timeout=timeout, **kw
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"ragtune {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


class ChatServer:
    """A minimal OpenAI-compatible chat-completions server on 127.0.0.1 (JSON and SSE streaming).

    It stands in for vLLM / NIM / Ollama, which cannot run on this CPU machine; it answers with
    scripted replies (or echoes the last user message) so tests can check ragtune's client side
    over real HTTP with the official `openai` client.
    """

    def __init__(self):
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.replies: list[str] = []
        self.requests: list[dict] = []
        self.default: str | None = None  # reply when no scripted one is left; None = echo
        self.responder = None  # or a function(messages) -> reply, standing in for a capable model
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(body)
                if not self.path.endswith("/chat/completions"):
                    return self._send(404, {"error": {"message": f"no route {self.path}"}})
                if body.get("model") == "missing-model":
                    return self._send(404, {"error": {"message": "model not found"}})
                if server.replies:
                    content = server.replies.pop(0)
                elif server.responder is not None:
                    content = server.responder(body["messages"])
                else:
                    content = server.default if server.default is not None else "echo: " + body["messages"][-1]["content"]
                for stop in body.get("stop") or []:
                    if stop in content:
                        content = content[: content.index(stop)]
                if body.get("stream"):
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    for i in range(0, len(content), 3):
                        self._event({"choices": [{"index": 0, "delta": {"content": content[i:i + 3]}, "finish_reason": None}]})
                    self._event({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                    self.wfile.write(b"data: [DONE]\n\n")
                    return
                self._send(200, {"choices": [{"index": 0, "finish_reason": "stop",
                                              "message": {"role": "assistant", "content": content}}],
                                 "usage": {"prompt_tokens": 7, "completion_tokens": len(content.split()), "total_tokens": 0}})

            def _event(self, payload):
                payload = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m", **payload}
                self.wfile.write(f"data: {json.dumps(payload)}\n\n".encode())
                self.wfile.flush()

            def _send(self, status, payload):
                payload = {"id": "x", "object": "chat.completion", "created": 0, "model": "m", **payload}
                out = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args):
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def close(self):
        self._httpd.shutdown()


class NeverCalled:
    """A generator that fails the test if it is asked anything (checks that a path skips the model)."""

    name, context_window = "never", 2048

    def __init__(self, why: str):
        self.why = why

    def count_tokens(self, text):
        return len(text.split())

    def generate(self, *args):
        raise AssertionError(self.why)

    stream = generate_batch = generate


@pytest.fixture
def chat_server():
    server = ChatServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def local_generator(tmp_path_factory):
    """The real default local LLM (SmolLM2-135M-Instruct), converted once per test session."""
    from ragtune.models.generator import LocalGenerator

    return LocalGenerator(home=tmp_path_factory.mktemp("models-home"))


def build_tiny_embedder(folder: Path, seed: int = 0) -> Path:
    """A randomly initialised 2-layer, 32-wide BERT behind MiniLM's own tokenizer, saved as a
    sentence-transformers folder (litgpt style: a test builds the tiny model it needs). It embeds
    in microseconds and its vectors mean nothing: for tests of plumbing, not of quality."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import modules as models
    from transformers import AutoTokenizer, BertConfig, BertModel

    from ragtune.models.loading import resolve_model

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("all-MiniLM-L6-v2"))
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512)
    hf = folder / "hf"
    BertModel(config).save_pretrained(str(hf))
    tokenizer.save_pretrained(str(hf))
    word = models.Transformer(str(hf), max_seq_length=256)
    model = SentenceTransformer(modules=[word, models.Pooling(word.get_embedding_dimension(), "mean"),
                                         models.Normalize()], device="cpu")
    model.save(str(folder / "st"))
    return folder / "st"


@pytest.fixture(scope="session")
def tiny_embedder(tmp_path_factory) -> str:
    """Path of the session's tiny random embedder (use as ``embedder.model=<path>``)."""
    return str(build_tiny_embedder(tmp_path_factory.mktemp("tiny-embedder")))


@pytest.fixture
def make_tiny_collection(home, tiny_embedder):
    """Like make_collection, on the tiny random embedder: fast, for tests that need no real ranking."""
    from ragtune.collection import Collection
    from ragtune.config import PipelineConfig

    opened = []

    def make(name: str = "test", overrides: list[str] | None = None) -> Collection:
        pipeline = PipelineConfig().with_overrides([f"embedder.model={tiny_embedder}", *(overrides or [])])
        coll = Collection.create(home, name, pipeline, exist_ok=True)
        opened.append(coll)
        return coll

    yield make
    for coll in opened:
        coll.close()
