"""OpenAI-compatible endpoints: ``/v1/chat/completions``, ``/v1/embeddings``, ``/v1/models``.

An official OpenAI client pointed at ``http://host:port/v1`` with a ragtune key works unchanged.
Two extra body fields (the client's ``extra_body``) make a chat a RAG call: ``collection``
(answer from that collection, as the key's principal; the reply carries ``citations``) and ``k``.
``model`` picks the base model or any registered adapter, per request.
"""

from __future__ import annotations

import time
from typing import Any, Iterator

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ragtune.serve.auth import ApiError, Caller, State
from ragtune.serve.routes.collections import answerer, chain_first, close_stream, record

router = APIRouter(prefix="/v1", tags=["openai"])


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):  # content parts: keep the text ones
            return "".join(p.get("text", "") for p in self.content if p.get("type") == "text")
        return self.content or ""


class ChatIn(BaseModel):
    model_config = ConfigDict(extra="allow")  # OpenAI fields ragtune ignores (n=1, user, ...) are accepted
    model: str
    messages: list[ChatMessage] = Field(min_length=1, max_length=256)
    stream: bool = False
    max_tokens: int | None = Field(None, ge=1, le=4096)
    max_completion_tokens: int | None = Field(None, ge=1, le=4096)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: str | list[str] | None = Field(None, description="up to 4 stop strings of at most 64 characters")
    seed: int | None = None
    collection: str | None = Field(None, description="ragtune: answer from this collection (RAG) with citations")
    k: int | None = Field(None, ge=1, le=50, description="ragtune: passages to retrieve")

    @field_validator("stop")
    @classmethod
    def _stops(cls, v: str | list[str] | None) -> str | list[str] | None:
        stops = [v] if isinstance(v, str) else v or []
        if len(stops) > 4 or any(not s or len(s) > 64 for s in stops):
            raise ValueError("stop: at most 4 non-empty strings of at most 64 characters")
        return v


class EmbeddingsIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    input: str | list[str] = Field(description="a text or up to 2048 texts")

    @field_validator("input")
    @classmethod
    def _bounded(cls, v: str | list[str]) -> str | list[str]:
        if isinstance(v, list) and len(v) > 2048:
            raise ValueError(f"{len(v)} inputs; send at most 2048 per request")
        return v


def _gen_config(body: ChatIn, cap: int):
    from ragtune.models.generator import GenerationConfig

    # The operator's cap wins over the request's (the answer then ends with finish_reason "length").
    cfg = GenerationConfig(max_new_tokens=min(body.max_completion_tokens or body.max_tokens or 256, cap))
    if body.temperature is not None:
        cfg.temperature = body.temperature
    if body.top_p is not None:
        cfg.top_p = body.top_p
    if body.seed is not None:
        cfg.seed = body.seed
    if body.stop:
        cfg.stop = [body.stop] if isinstance(body.stop, str) else list(body.stop)
    return cfg


@router.post("/chat/completions")
def chat_completions(body: ChatIn, srv: State, who: Caller):
    created = int(time.time())
    if body.collection:
        return _rag_chat(body, srv, who, created)
    base = srv.default_pipeline.generator
    generator = srv.generators.get(base, srv.adapter_for(base.model, body.model, who))
    messages = [{"role": m.role, "content": m.text()} for m in body.messages]
    config = _gen_config(body, srv.config.max_completion_tokens)
    cid = f"chatcmpl-{time.time_ns():x}"
    if not body.stream:
        gen = generator.generate(messages, config)
        return _completion(cid, created, body.model, gen.text, gen.finish_reason,
                           {"prompt_tokens": gen.prompt_tokens, "completion_tokens": gen.completion_tokens})
    pieces = generator.stream(messages, config)
    first = next(pieces, "")  # a full queue answers 503 here, before the stream starts

    def events() -> Iterator[str]:
        try:
            yield _chunk(cid, created, body.model, {"role": "assistant", "content": first})
            for piece in pieces:
                yield _chunk(cid, created, body.model, {"content": piece})
            yield _chunk(cid, created, body.model, {}, "stop")
            yield "data: [DONE]\n\n"
        finally:
            close_stream(pieces)  # a client that went away stops the generation (and frees the model's gate)

    return StreamingResponse(events(), media_type="text/event-stream")


def _rag_chat(body: ChatIn, srv: State, who, created: int):
    from ragtune.answer.answerer import Answer

    question = next((m.text() for m in reversed(body.messages) if m.role == "user"), "").strip()
    if not question:
        raise ApiError(400, "invalid_request", "a RAG chat needs a user message with the question")
    assert body.collection is not None  # the caller routes only collection chats here
    pipeline = srv.handle(body.collection).collection.pipeline
    adapter = srv.adapter_for(pipeline.generator.model, body.model, who)
    ans = answerer(srv, body.collection, adapter)
    if not body.stream:
        answer = ans.ask(question, who.principal, k=body.k)
        record(srv, body.collection, who, answer, body.model)
        usage = {"prompt_tokens": answer.tokens.get("prompt", 0), "completion_tokens": answer.tokens.get("completion", 0)}
        out = _completion(f"chatcmpl-{answer.id}", created, body.model, answer.text, "stop", usage)
        out.update(_rag_fields(answer))
        return out
    pieces = ans.stream(question, who.principal, k=body.k)
    first = next(pieces)

    def events() -> Iterator[str]:
        cid, started = f"chatcmpl-{time.time_ns():x}", False
        try:
            for piece in chain_first(first, pieces):
                if isinstance(piece, Answer):
                    record(srv, body.collection, who, piece, body.model)
                    yield _chunk(cid, created, body.model, {}, "stop", _rag_fields(piece))
                else:
                    yield _chunk(cid, created, body.model, {"content": piece, **({} if started else {"role": "assistant"})})
                    started = True
            yield "data: [DONE]\n\n"
        finally:
            close_stream(pieces)

    return StreamingResponse(events(), media_type="text/event-stream")


def _rag_fields(answer) -> dict:
    return {"answer_id": answer.id, "abstained": answer.abstained, "mode": answer.mode,
            "answered_by": answer.answered_by, "groundedness": answer.groundedness,
            "citations": [c.__dict__ for c in answer.citations]}


def _completion(cid: str, created: int, model: str, text: str, finish: str, usage: dict) -> dict:
    usage = {**usage, "total_tokens": usage["prompt_tokens"] + usage["completion_tokens"]}
    return {"id": cid, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
            "usage": usage}


def _chunk(cid: str, created: int, model: str, delta: dict, finish: str | None = None, extra: dict | None = None) -> str:
    import json

    data = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **(extra or {})}
    return f"data: {json.dumps(data)}\n\n"


@router.post("/embeddings")
def embeddings(body: EmbeddingsIn, srv: State, who: Caller) -> dict:
    from ragtune.models.embedder import Embedder

    cfg = srv.default_pipeline.embedder
    if body.model not in (cfg.model, cfg.model.split("/")[-1]):
        raise ApiError(404, "model_not_found", f"embedding model {body.model!r} not found; this server embeds with {cfg.model!r}")
    texts = [body.input] if isinstance(body.input, str) else body.input
    if not texts or any(not isinstance(t, str) or not t for t in texts):
        raise ApiError(400, "invalid_request", "input must be a non-empty string or list of non-empty strings")
    embedder = srv.batcher(Embedder(cfg))
    vectors = embedder.embed_queries(texts)
    tokens = sum(len(embedder.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)
    return {"object": "list", "model": body.model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            "data": [{"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vectors)]}


@router.get("/models")
def models(srv: State, who: Caller) -> dict:
    from ragtune.models.adapters import AdapterRegistry, refusal
    from ragtune.serve.state import may_use

    gen, emb = srv.default_pipeline.generator, srv.default_pipeline.embedder
    data = [{"id": gen.model, "object": "model", "created": 0, "owned_by": "ragtune", "kind": "generator"},
            {"id": emb.model, "object": "model", "created": 0, "owned_by": "ragtune", "kind": "embedding"}]
    for meta in AdapterRegistry(srv.home).list():
        # an adapter the key may not use is not listed either, nor one its gate refused
        if not may_use(meta, who) or refusal(meta):
            continue
        data.append({"id": meta["name"], "object": "model", "created": _epoch(meta.get("created")), "owned_by": "ragtune",
                     "kind": "adapter", "parent": meta.get("base"), "method": meta.get("method")})
    listed = {d["id"] for d in data}  # a model another key loaded is no more visible than its listing
    return {"object": "list", "data": data, "loaded": [m for m in srv.generators.loaded() if m in listed]}


def _epoch(created: str | None) -> int:
    try:
        return int(time.mktime(time.strptime(created or "", "%Y-%m-%dT%H:%M:%S")))
    except ValueError:
        return 0
