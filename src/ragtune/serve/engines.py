"""Shared model engines of the server: generators per adapter (bounded LRU, one generation at a
time per local model, a bounded wait queue) and an embedder that micro-batches across requests.

Why not one model with many LoRA adapters switched per request? peft can hold several adapters
of one kind on one base, but not a prompt-tuning and a LoRA adapter together, and switching the
active adapter of a shared model under concurrent requests is exactly how answers get mixed up.
Here each cached entry is its own model, used by one generation at a time; that costs a base
copy per adapter (0.5 GB for SmolLM2-135M), which the LRU bound caps. For many adapters on a
large model, point the generator at vLLM with ``--enable-lora`` (continuous batching, shared base):
see docs/serving.md.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from ragtune.config import GeneratorConfig
from ragtune.models.generator import (
    GenerationConfig,
    Generator,
    Messages,
    make_generator,
)
from ragtune.tracing import stage


class Busy(RuntimeError):
    """Too many requests already wait for this model: the server answers 503 + Retry-After."""

    def __init__(self, model: str, waiting: int, retry_after: int):
        super().__init__(f"model {model!r} is busy ({waiting} requests queued); retry in {retry_after} s")
        self.retry_after = retry_after


class Gate:
    """At most one generation at a time, at most ``max_waiting`` more queued; later ones fail fast."""

    def __init__(self, name: str, max_waiting: int, retry_after: int = 2):
        self.name, self.max_waiting, self.retry_after = name, max_waiting, retry_after
        self._lock = threading.Lock()
        self._count = threading.Lock()
        self._waiting = 0

    @property
    def occupancy(self) -> int:
        """Calls inside the gate now: the running one plus those queued behind it."""
        with self._count:
            return self._waiting

    @contextmanager
    def hold(self) -> Iterator[None]:
        with self._count:
            if self._waiting > self.max_waiting:  # one running + max_waiting queued
                raise Busy(self.name, self._waiting - 1, self.retry_after)
            self._waiting += 1
        try:
            with self._lock:
                yield
        finally:
            with self._count:
                self._waiting -= 1


class GatedGenerator:
    """A generator whose every call passes its model's :class:`Gate` (the Generator protocol)."""

    def __init__(self, inner: Generator, gate: Gate):
        self.inner, self.gate = inner, gate
        self.name = inner.name
        self.context_window = inner.context_window

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def generate(self, messages: Messages, config: GenerationConfig):
        with self.gate.hold():
            return self.inner.generate(messages, config)

    def stream(self, messages: Messages, config: GenerationConfig) -> Iterator[str]:
        with self.gate.hold():
            yield from self.inner.stream(messages, config)


class GatedReader:
    """A reader whose forward passes go through ``gate``: concurrent requests read one at a time,
    so the server's memory stays that of one batch of windows however many ask at once (32
    concurrent model calls grew it 2.1 → 4.6 GB before); past the queue, 503 + Retry-After."""

    def __init__(self, inner, gate: Gate):
        self.inner, self.gate = inner, gate
        self.name = inner.name
        self.context_window = inner.context_window

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def read(self, question: str, passages: list[str]):
        with self.gate.hold():
            return self.inner.read(question, passages)


class GatedReranker:
    """A reranker whose cross-encoder calls go through ``gate`` (see :class:`GatedReader`)."""

    def __init__(self, inner, gate: Gate):
        self.inner, self.gate = inner, gate

    def rerank(self, query: str, hits: list):
        with self.gate.hold():
            return self.inner.rerank(query, hits)


class GeneratorPool:
    """Generators by (generator settings, adapter), loaded on first use, least recently used
    evicted beyond ``capacity``. For an OpenAI-compatible backend the adapter name is passed on
    as the served model name (vLLM serves each LoRA adapter under its own name)."""

    def __init__(self, home: str | Path | None, capacity: int = 2, max_waiting: int = 8):
        self.home, self.capacity, self.max_waiting = home, capacity, max_waiting
        self._entries: OrderedDict[tuple, GatedGenerator] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[tuple, threading.Lock] = {}

    def get(self, config: GeneratorConfig, adapter: str | None = None) -> GatedGenerator:
        if adapter is not None and config.backend == "openai":
            config = config.model_copy(update={"model": adapter, "adapter": None})
        elif adapter is not None:
            config = config.model_copy(update={"adapter": adapter})
        key = (config.backend, config.model, config.base_url, config.adapter, config.device)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:  # two first requests for one adapter load it once
            with self._lock:
                if key in self._entries:
                    return self._entries[key]
            label = config.adapter or config.model
            try:
                with stage("model.load", kind="generator", model=label):
                    entry = GatedGenerator(make_generator(config, self.home), Gate(label, self.max_waiting))
            finally:  # a failed load must not leave its lock behind
                with self._lock:
                    self._loading.pop(key, None)
            with self._lock:
                self._entries[key] = entry
                while len(self._entries) > self.capacity:
                    self._entries.popitem(last=False)  # in-flight users keep their reference
            return entry

    def loaded(self) -> list[str]:
        with self._lock:
            return [k[3] or k[1] for k in self._entries]

    def gates(self) -> list[Gate]:
        with self._lock:
            return [e.gate for e in self._entries.values()]


class BatchingEmbedder:
    """Wraps an :class:`~ragtune.models.embedder.Embedder`: concurrent ``embed_queries`` calls
    are gathered for up to ``window_ms`` (or ``max_batch`` texts) and encoded in one forward pass.
    One request alone pays at most the window; 32 at once cost about one batch instead of 32."""

    def __init__(self, inner, window_ms: float = 3.0, max_batch: int = 64):
        self.inner, self.window, self.max_batch = inner, window_ms / 1000, max_batch
        self._queue: list[tuple[list[str], Future]] = []
        self._cv = threading.Condition()
        # One encode or tokenizer call at a time: a Hugging Face fast tokenizer keeps padding and
        # truncation as state, so a token count on a request thread switched padding off under the
        # batcher's encode ("expected sequence of length 49 at dim 1 (got 28)", 500s under load).
        self._model_lock = threading.Lock()
        self.tokenizer = LockedTokenizer(inner.tokenizer, self._model_lock)
        self.batches = 0  # forward passes run (the load benchmark reports texts per pass)
        self.texts = 0
        threading.Thread(target=self._run, daemon=True, name="embed-batcher").start()

    def __getattr__(self, name):  # dim, tokenizer, embed_documents, ... pass through
        return getattr(self.inner, name)

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        future: Future = Future()
        with self._cv:
            self._queue.append((list(texts), future))
            self._cv.notify()
        return future.result()

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_queries([text])[0]

    def embed_documents(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        with self._model_lock:
            return self.inner.embed_documents(texts, show_progress)

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._queue:
                    self._cv.wait()
                deadline = time.monotonic() + self.window
                while sum(len(t) for t, _ in self._queue) < self.max_batch and (left := deadline - time.monotonic()) > 0:
                    self._cv.wait(left)
                batch, self._queue = self._queue, []
            texts = [t for ts, _ in batch for t in ts]
            try:
                with self._model_lock:
                    vectors = self.inner.embed_queries(texts)
            except BaseException as e:  # every waiting request gets the error, the thread lives on
                for _, f in batch:
                    f.set_exception(e)
                continue
            self.batches += 1
            self.texts += len(texts)
            i = 0
            for ts, f in batch:
                f.set_result(vectors[i:i + len(ts)])
                i += len(ts)


class LockedTokenizer:
    """A tokenizer whose calls (and method calls) hold ``lock``; other attributes pass through."""

    def __init__(self, inner, lock: threading.Lock):
        self._inner, self._lock = inner, lock

    def __call__(self, *args, **kwargs):
        with self._lock:
            return self._inner(*args, **kwargs)

    def __getattr__(self, name):
        value = getattr(self._inner, name)
        if not callable(value):
            return value

        def locked(*args, **kwargs):
            with self._lock:
                return value(*args, **kwargs)
        return locked
