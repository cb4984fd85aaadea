"""``/v1/collections``: create, list, inspect, delete; upload and delete documents; search; ask."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any, Iterator, Literal

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ragtune.serve.auth import Admin, ApiError, Caller, State, not_found
from ragtune.serve.state import ServerState

router = APIRouter(prefix="/v1/collections", tags=["collections"])
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._()+-]{0,200}$")


class CreateCollection(BaseModel):
    name: str
    set: list[str] = Field(default_factory=list, description="pipeline overrides, e.g. chunking.chunk_size=128")


class DocumentIn(BaseModel):
    id: str = Field(min_length=1, max_length=512)
    text: str
    title: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)
    acl: dict[str, Any] | None = Field(None, description="{public, users, groups}; default: the request's acl")


class DocumentsIn(BaseModel):
    documents: list[DocumentIn] = Field(min_length=1, max_length=10_000)
    acl: dict[str, Any] = Field(default_factory=dict, description="ACL of documents that carry none")


class SearchIn(BaseModel):
    query: str = Field(max_length=8000)
    mode: Literal["dense", "bm25", "hybrid"] | None = None
    k: int | None = Field(None, ge=1, le=200)
    metadata: dict[str, Any] = Field(default_factory=dict, description="metadata filter, pushed into the index query")
    explain: bool = Field(False, description="hybrid: each hit also carries each retriever's own rank and score")


class AskIn(BaseModel):
    question: str = Field(max_length=8000)
    k: int | None = Field(None, ge=1, le=50)
    adapter: str | None = Field(None, description="a registered generator adapter for this request")
    stream: bool = Field(False, description="server-sent events: token events, then one answer event")


def _stats(srv: ServerState, name: str, who) -> dict:
    """An admin sees everything; a user sees counts of what it may read, and no server paths
    (the last run names the folders and files ingested, failures included)."""
    from ragtune.types import Acl

    h = srv.handle(name)
    if who.is_admin:
        stats = h.collection.stats()
        stats["chunks_in_store"] = h.collection.store.count()
        return stats
    visible = [r for r in h.collection.manifest.all() if r.state == "indexed"
               and Acl.from_dict(r.acl).visible_to(who.principal)]
    return {"name": name, "index_version": h.collection.version, "documents": len(visible),
            "chunks": sum(r.chunks for r in visible),
            "last_indexed_at": max((r.indexed_at for r in visible if r.indexed_at), default=None)}


@router.get("")
def list_collections(srv: State, who: Caller) -> dict:
    from ragtune.collection import Collection

    return {"collections": [_stats(srv, c.name, who) for c in Collection.list(srv.home)]}


@router.post("", status_code=201)
def create_collection(body: CreateCollection, srv: State, who: Admin) -> dict:
    from ragtune.collection import Collection

    if any(c.name == body.name for c in Collection.list(srv.home)):
        raise ApiError(409, "conflict", f"collection {body.name!r} already exists")
    srv.create_collection(body.name, body.set)
    return _stats(srv, body.name, who)


@router.get("/{name}")
def get_collection(name: str, srv: State, who: Caller) -> dict:
    return {"stats": _stats(srv, name, who), "pipeline": srv.handle(name).collection.pipeline.shown()}


class ConfigureCollection(BaseModel):
    set: list[str] = Field(min_length=1, description="pipeline fields to change, e.g. query.k=5 (the bound pipeline)")


@router.patch("/{name}")
def configure_collection(name: str, body: ConfigureCollection, srv: State, who: Admin) -> dict:
    """Change a collection's bound pipeline (``ragtune collections configure``); what its index was
    built with (embedder, chunking, store) cannot change here."""
    h = srv.handle(name)
    with h.write:
        changes = h.collection.configure(body.set)
        h.searcher = h.reader = None  # rebuilt from the new settings on the next request
    return {"changed": {k: {"old": old, "new": new} for k, (old, new) in changes.items()},
            "pipeline": h.collection.pipeline.shown()}


@router.delete("/{name}")
def delete_collection(name: str, srv: State, who: Admin) -> dict:
    srv.handle(name)  # 404 when missing
    srv.delete_collection(name)
    return {"deleted": name}


@router.post("/{name}/documents", status_code=202)
async def add_documents(name: str, request: Request, srv: State, who: Admin) -> dict:
    """Multipart ``files`` (+ form field ``acl`` as JSON, and ``record_acls=true`` to let JSON/JSONL
    records' own ``acl`` fields apply) or a JSON body of documents. Files stream to the job's own
    staging folder; ingestion runs as a background job."""
    srv.handle(name)
    job_id = srv.jobs.new_id()
    folder = srv.staging_dir(name, job_id)
    try:
        acl, paths, record_acls = await _stage(request, srv, folder)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)  # a refused request leaves nothing staged
        raise
    files = [p.relative_to(folder).as_posix() for p in paths]
    job = srv.jobs.submit(name, who.id, files, acl, job_id=job_id, record_acls=record_acls)
    return {"job": public_job(job)}


async def _stage(request: Request, srv: ServerState, folder: Path) -> tuple[dict, list[Path], bool]:
    """Save what the request uploads under ``folder``: (the request's ACL, the saved files, whether
    records' own ACLs apply)."""
    from ragtune.types import Acl

    kind = request.headers.get("content-type", "")
    if kind.startswith("multipart/form-data"):
        form = await request.form()  # file parts spool to disk past 1 MB
        acl = _acl(form.get("acl") or "{}", "acl")
        record_acls = _flag(form.get("record_acls"), "record_acls")
        if Acl.from_dict(acl).is_empty:
            raise ApiError(400, "invalid_request", "form field 'acl' is required for files: e.g. "
                           "{\"public\": true} or {\"groups\": [\"eng\"]}")
        uploads = [f for f in form.getlist("files") if hasattr(f, "filename")]
        if not uploads:
            raise ApiError(400, "invalid_request", "no files: send them as multipart field 'files'")
        paths = [await run_in_threadpool(_save_upload, f, folder / "files", srv.config.max_upload_mb) for f in uploads]
    elif kind.startswith("application/json"):
        try:
            body = DocumentsIn.model_validate(await request.json())
        except ValueError as e:
            raise ApiError(422, "invalid_request", f"body: {e}") from None
        acl = _acl(body.acl, "acl")
        owns = []
        for i, d in enumerate(body.documents):
            owns.append(_acl(d.acl, f"documents[{i}].acl") if d.acl is not None else None)
            if Acl.from_dict(owns[-1] or acl).is_empty:
                raise ApiError(400, "invalid_request", f"documents[{i}] ({d.id!r}) has no ACL: give it an 'acl' "
                               "or the request one, e.g. {\"public\": true} or {\"groups\": [\"eng\"]}")
        paths = [_save_record(d, own, folder / "records") for d, own in zip(body.documents, owns)]
        record_acls = True  # each document's acl is part of this request, checked above
    else:
        raise ApiError(415, "unsupported_media_type", "send multipart/form-data (files) or application/json (documents)")
    return acl, paths, record_acls


def close_stream(pieces) -> None:
    """Close a generator-backed stream (its ``finally`` stops the generation); plain iterators have nothing to close."""
    close = getattr(pieces, "close", None)
    if close is not None:
        close()


def public_job(job) -> dict:
    out = job.to_dict()
    out["files"] = [Path(f).name for f in out["files"]]  # not the server's paths
    return out


def _acl(raw: Any, field: str) -> dict:
    from ragtune.types import Acl

    try:
        data = json.loads(raw) if isinstance(raw, str) else raw
        return Acl.from_dict(data).to_dict()
    except (ValueError, TypeError) as e:
        raise ApiError(400, "invalid_request", f"{field}: {e}") from None


def _save_upload(upload, folder: Path, max_mb: int) -> Path:
    name = Path(upload.filename or "").name
    if not _SAFE_NAME.match(name):
        raise ApiError(400, "invalid_request", f"file name {upload.filename!r}: use letters, digits, spaces and ._()+-")
    folder.mkdir(parents=True, exist_ok=True)
    tmp, size = folder / f".{name}.part", 0
    with tmp.open("wb") as out:  # chunk by chunk: a large upload never sits in memory
        while chunk := upload.file.read(1 << 20):
            size += len(chunk)
            if size > max_mb * 2**20:
                out.close()
                tmp.unlink()
                raise ApiError(413, "too_large", f"{name} is over the {max_mb} MB upload limit")
            out.write(chunk)
    target = folder / name
    tmp.replace(target)  # a re-upload of the same name replaces that document
    return target


def _flag(raw: Any, field: str) -> bool:
    if raw in (None, "", "false"):
        return False
    if raw == "true":
        return True
    raise ApiError(400, "invalid_request", f"form field {field!r} must be true or false, not {raw!r}")


def _save_record(doc: DocumentIn, acl: dict | None, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    record = {"_id": doc.id, "title": doc.title, "text": doc.text, "metadata": doc.metadata}
    if acl is not None:
        record["acl"] = acl  # the validated form, not what the client sent
    path = folder / f"{hashlib.sha1(doc.id.encode()).hexdigest()}.json"
    tmp = path.with_suffix(".part")
    tmp.write_text(json.dumps(record))
    tmp.replace(path)
    return path


def _visible_record(srv: ServerState, name: str, doc_id: str, who) -> Any:
    from ragtune.types import Acl

    rec = srv.handle(name).collection.manifest.get(doc_id)
    if rec is None or not (who.is_admin or Acl.from_dict(rec.acl).visible_to(who.principal)):
        raise not_found("document")  # invisible and missing look the same
    return rec


@router.get("/{name}/documents/{doc_id:path}")
def get_document(name: str, doc_id: str, srv: State, who: Caller) -> dict:
    rec = _visible_record(srv, name, doc_id, who)
    out = {"id": rec.doc_id, "title": rec.title, "source": Path(rec.source).name, "state": rec.state,
           "chunks": rec.chunks, "indexed_at": rec.indexed_at}
    if who.is_admin:
        out["acl"] = rec.acl
    return out


@router.delete("/{name}/documents/{doc_id:path}")
def delete_document(name: str, doc_id: str, srv: State, who: Admin) -> dict:
    from ragtune.ingest.sync import remove_document

    h = srv.handle(name)
    with h.write:
        try:
            rec = remove_document(h.collection, doc_id)
        except KeyError:
            raise not_found("document") from None
    source = Path(rec.source)
    if source.is_relative_to(srv.upload_dir(name)):  # an uploaded file goes too, or a re-sync would restore it
        source.unlink(missing_ok=True)
    return {"deleted": doc_id}


class SourceIn(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    type: str = Field(description="folder, web, git, mailbox (or a plugin's type)")
    options: dict[str, Any] = Field(default_factory=dict, description="the connector's options (docs/sources.md)")
    acl: dict[str, Any] = Field(default_factory=dict, description="{public, users, groups} of its documents")
    every_s: float | None = Field(None, gt=0, description="sync every this many seconds (the server's scheduler)")


@router.get("/{name}/sources")
def list_sources(name: str, srv: State, who: Admin) -> dict:
    """Each source with its schedule and last sync: seen, changed, deleted, failed, lag."""
    from ragtune.ingest.sources import list_sources as sources_of

    h = srv.handle(name)
    pending = {j.source: j.id for j in srv.jobs.pending() if j.collection == name and j.source}
    return {"sources": [{**s.describe(), "pending_job": pending.get(s.name)} for s in sources_of(h.collection)]}


@router.get("/{name}/flywheel")
def flywheel_history(name: str, srv: State, who: Admin) -> dict:
    """The flywheel's runs (trigger, each gate's decision and held-out measure, versions before
    and after; rollbacks) and its quality over time: what `ragtune flywheel history` shows."""
    from ragtune.flywheel import History, quality_series

    runs = History(srv.handle(name).collection).runs()
    return {"runs": runs, "series": quality_series(runs),
            "worker_every_minutes": srv.config.flywheel_every_minutes}


@router.post("/{name}/sources", status_code=201)
def add_source(name: str, body: SourceIn, srv: State, who: Admin) -> dict:
    from ragtune.ingest.sources import add_source as add

    h = srv.handle(name)
    with h.write:
        source = add(h.collection, body.name, body.type, body.options, _acl_of(body.acl), body.every_s)
    return source.describe()


class SourcePatch(BaseModel):
    options: dict[str, Any] = Field(default_factory=dict, description="options to change (null removes one)")
    acl: dict[str, Any] | None = Field(None, description="a new default ACL")
    every_s: float | None = Field(None, ge=0, description="a new interval (0: no schedule); absent: unchanged")


@router.patch("/{name}/sources/{source}")
def update_source(name: str, source: str, body: SourcePatch, srv: State, who: Admin) -> dict:
    """Change a source; its next sync reads everything again, so the change reaches every document."""
    from ragtune.ingest.sources import update_source as update

    h = srv.handle(name)
    kwargs = {} if "every_s" not in body.model_fields_set else {"every_s": body.every_s or None}
    with h.write:
        changed = update(h.collection, source, body.options, None if body.acl is None else _acl_of(body.acl), **kwargs)
    return changed.describe()


@router.post("/{name}/sources/{source}/sync", status_code=202)
def sync_source(name: str, source: str, srv: State, who: Admin) -> dict:
    """Queue a sync now (or return the one already queued)."""
    from ragtune.ingest.sources import get_source

    get_source(srv.handle(name).collection, source)  # 404 naming the sources there
    return public_job(srv.sync_source(name, source, who.id))


@router.delete("/{name}/sources/{source}")
def remove_source(name: str, source: str, srv: State, who: Admin) -> dict:
    from ragtune.ingest.sources import remove_source as remove

    h = srv.handle(name)
    with h.write:
        report = remove(h.collection, source)
    return {"removed": source, "documents_deleted": report.deleted}


def _acl_of(raw: dict[str, Any]):
    from ragtune.types import Acl

    return Acl.from_dict(raw)


@router.post("/{name}/search")
def search(name: str, body: SearchIn, srv: State, who: Caller) -> dict:
    h = srv.handle(name)
    hits = srv.searcher(h).search(body.query, who.principal, mode=body.mode, k=body.k, metadata=body.metadata,
                                       with_ranks=body.explain)
    return {"hits": [_public_hit(srv, name, hit) for hit in hits]}


def _public_hit(srv: ServerState, name: str, hit) -> dict:
    out = hit.to_dict()
    source = Path(out["source"]) if out["source"] else None
    if source is not None and source.is_relative_to(srv.upload_dir(name)):
        # uploads: the file's name, not the server's path; a JSON document is known by its id
        out["source"] = "" if source.parent.name == "records" else source.name
    return out


def answerer(srv: ServerState, name: str, adapter: str | None):
    from ragtune.answer import Answerer

    h = srv.handle(name)
    pipeline = h.collection.pipeline
    # A per-request adapter is a generator the caller chose: answer.mode=auto answers with it.
    chosen = pipeline.generator.model_copy(update={"adapter": adapter}) if adapter else pipeline.generator
    mode = pipeline.answer.resolved_mode(chosen)
    generator = None
    if mode == "generative" or pipeline.query.strategy != "plain":
        generator = srv.generators.get(pipeline.generator, adapter)
    # Generative mode keeps the reader as the grounding guard's fallback.
    config = pipeline.answer.model_copy(update={"mode": mode})
    return Answerer(h.collection, generator, config=config, searcher=srv.searcher(h), reader=srv.reader(h))


def record(srv: ServerState, name: str | None, who, answer, model: str | None) -> None:
    citations = [c.__dict__ for c in answer.citations]
    srv.feedback.record_answer(answer.id, name, who.user, answer.question, answer.text, answer.passages, citations,
                               answer.answered_by or model)


@router.post("/{name}/ask")
def ask(name: str, body: AskIn, srv: State, who: Caller):
    if not body.question.strip():
        raise ApiError(400, "invalid_request", "question is empty")
    base = srv.handle(name).collection.pipeline.generator.model
    adapter = srv.adapter_for(base, body.adapter, who) if body.adapter else None
    ans = answerer(srv, name, adapter)
    model = adapter or base
    if not body.stream:
        answer = ans.ask(body.question, who.principal, k=body.k)
        record(srv, name, who, answer, model)
        return answer.to_dict()
    pieces = ans.stream(body.question, who.principal, k=body.k)
    first = next(pieces)  # waits for retrieval and a turn on the model: a full queue is a 503, not a broken stream

    def events() -> Iterator[str]:
        from ragtune.answer.answerer import Answer

        try:
            for piece in chain_first(first, pieces):
                if isinstance(piece, Answer):
                    record(srv, name, who, piece, model)
                    yield sse("answer", piece.to_dict())
                else:
                    yield sse("token", {"text": piece})
        finally:
            close_stream(pieces)  # a client that went away stops the generation

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def chain_first(first, rest):
    """A stream whose first item was already taken (to fail with 503 before the response starts)."""
    yield first
    yield from rest


def sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n"


