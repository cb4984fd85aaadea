"""What one server process holds: the keys, feedback and job stores, one open handle per
collection (an embedded store has a single owner: the server), and the shared model engines."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, Field

from ragtune.collection import Collection
from ragtune.config import PipelineConfig, ragtune_home
from ragtune.errors import NotFoundError
from ragtune.feedback import FeedbackStore
from ragtune.serve.engines import BatchingEmbedder, Gate, GatedReader, GatedReranker, GeneratorPool
from ragtune.serve.identity import Authenticator, OidcConfig, ProxyConfig
from ragtune.serve.jobs import Job, JobQueue
from ragtune.serve.keys import KeyInfo, KeyStore
from ragtune.serve.telemetry import Telemetry, TelemetryConfig
from ragtune.tracing import stage
from ragtune.types import Scope

log = logging.getLogger("ragtune.serve")


def may_use(meta: dict, who: KeyInfo) -> bool:
    """Whether ``who`` may use a trained artefact: admins always; others when it recorded a scope
    (the ACLs of its training text) that lets them read all of it. No scope recorded (trained
    before scopes, or on data of unknown origin): admins only."""
    scope = Scope.from_list(meta.get("scope"))
    return who.is_admin or (scope is not None and scope.allows(who.principal))


class ModelNotFoundError(NotFoundError):
    kind = "model_not_found"  # OpenAI's name for it: its clients recognise the error


class ServeConfig(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8000
    adapter_cache: int = Field(2, ge=1, description="generators (base or adapter) kept loaded, least recently used evicted")
    max_queue: int = Field(8, ge=0, description="generations that may wait per model before 503 + Retry-After")
    max_upload_mb: int = Field(512, ge=1, description="largest accepted upload (files stream to disk)")
    max_completion_tokens: int = Field(1024, ge=1, description="most tokens one chat completion may generate")
    max_request_mb: float = Field(8, gt=0, description="largest body of any other request (JSON)")
    embed_window_ms: float = Field(3.0, ge=0, description="how long a query embedding waits to batch with others")
    pipeline: list[str] = Field(default_factory=list, description="overrides of the default pipeline (new collections, chat)")
    oidc: OidcConfig | None = Field(None, description="accept an identity provider's tokens beside API keys")
    proxy: ProxyConfig | None = Field(None, description="believe a trusted proxy's user/groups headers")
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    sync_sources: bool = Field(True, description="run each collection's scheduled source syncs (`sources add --every`)")
    sync_tick_s: float = Field(5.0, gt=0, description="how often the scheduler looks for due source syncs")
    flywheel_every_minutes: float | None = Field(
        None, gt=0, description="opt-in: this often, run `ragtune flywheel` on each collection whose run is due "
        "(one at a time, at low priority; that collection's uploads wait, queries do not)")
    flywheel: dict = Field(default_factory=dict, description="FlywheelConfig fields for the worker, e.g. {synthetic: false}")


@dataclass
class Handle:
    collection: Collection
    write: threading.Lock  # ingestion jobs and deletes of one collection run one at a time
    searcher: object | None = None
    reader: object | None = None


class ServerState:
    def __init__(self, home: str | Path | None, config: ServeConfig | None = None):
        self.home = ragtune_home(home)
        self.config = config or ServeConfig()
        self.default_pipeline = PipelineConfig().with_overrides(self.config.pipeline)
        self.keys = KeyStore(self.home)
        self.auth = Authenticator(self.keys, self.config.oidc, self.config.proxy)
        self.feedback = FeedbackStore(self.home)
        self.generators = GeneratorPool(self.home, self.config.adapter_cache, self.config.max_queue)
        self._handles: dict[str, Handle] = {}
        self._batchers: dict[int, BatchingEmbedder] = {}
        self._lock = threading.RLock()
        # Reader and reranker forward passes of every collection, one at a time (bounded memory).
        self.encoders = Gate("encoders", self.config.max_queue)
        self.jobs = JobQueue(self.home, self._run_job)
        self.telemetry = Telemetry(self.config.telemetry, self.gate_depths, self.jobs.pending)
        self._stop_scheduler = threading.Event()
        self._scheduler: threading.Thread | None = None
        if self.config.sync_sources:
            self._scheduler = threading.Thread(target=self._schedule_syncs, daemon=True, name="source-syncs")
            self._scheduler.start()
        self._flywheel: threading.Thread | None = None
        if self.config.flywheel_every_minutes:
            self._flywheel = threading.Thread(target=self._schedule_flywheel, daemon=True, name="flywheel")
            self._flywheel.start()

    # -- collections ---------------------------------------------------------------------------
    def handle(self, name: str) -> Handle:
        """The open handle of collection ``name`` (CollectionNotFoundError when there is none)."""
        with self._lock:
            if name not in self._handles:
                with stage("model.load", kind="collection", collection=name):
                    coll = Collection.open(self.home, name)
                coll.embedder = self.batcher(coll.embedder)  # queries of this handle go through the batcher
                self._handles[name] = Handle(coll, threading.Lock())
            return self._handles[name]

    def gate_depths(self) -> list[tuple[str, int]]:
        """(gate, calls inside it) of the shared encoder gate and every loaded generator."""
        return [(g.name, g.occupancy) for g in [self.encoders, *self.generators.gates()]]

    def batcher(self, embedder) -> BatchingEmbedder:
        with self._lock:
            key = id(embedder.model)  # one batcher per loaded model, shared by collections using it
            if key not in self._batchers:
                self._batchers[key] = BatchingEmbedder(embedder, self.config.embed_window_ms)
            return self._batchers[key]

    def searcher(self, h: Handle):
        from ragtune.retrieve import Searcher

        with self._lock:
            if h.searcher is None:
                with stage("model.load", kind="searcher"):  # the reranker, when one is configured
                    h.searcher = Searcher(h.collection)
                if h.searcher.reranker is not None:
                    h.searcher.reranker = GatedReranker(h.searcher.reranker, self.encoders)
            return h.searcher

    def reader(self, h: Handle):
        from ragtune.answer.extractive import make_reader

        cfg = h.collection.pipeline.reader
        with self._lock:
            if h.reader is None:
                with stage("model.load", kind="reader"):
                    h.reader = GatedReader(make_reader(cfg, h.collection.embedder), self.encoders)
            return h.reader

    def create_collection(self, name: str, overrides: list[str]) -> Collection:
        pipeline = self.default_pipeline.with_overrides(overrides)
        Collection.create(self.home, name, pipeline).close()
        return self.handle(name).collection

    def delete_collection(self, name: str) -> None:
        with self._lock:
            h = self._handles.pop(name, None)
        if h is not None:
            with h.write:
                h.collection.close()
        Collection.delete(self.home, name)
        shutil.rmtree(self.upload_dir(name), ignore_errors=True)

    def upload_dir(self, name: str) -> Path:
        return self.home / "uploads" / name

    # -- jobs ----------------------------------------------------------------------------------
    def adapter_for(self, base: str, model: str, who: KeyInfo) -> str | None:
        """None for the base model itself, the adapter name for a registered adapter the caller
        may use; ModelNotFoundError otherwise (a request never names a folder on this server, and
        an adapter trained on text the caller may not read looks exactly like a missing one)."""
        from ragtune.models.adapters import AdapterRegistry

        if model in (base, base.split("/")[-1]):
            return None
        registry = AdapterRegistry(self.home)
        if registry.exists(model) and may_use(registry.get(model), who):
            why = registry.refusal(model)
            if why:
                raise ModelNotFoundError(f"adapter {model!r} was refused by its gate ({why}) and is not served")
            return model
        raise ModelNotFoundError(f"model {model!r} not found; GET /v1/models lists base models and adapters")

    def staging_dir(self, name: str, job_id: str) -> Path:
        """Where job ``job_id`` keeps its own copy of what it uploads, until it has run."""
        return self.upload_dir(name) / "jobs" / job_id

    def sync_source(self, collection: str, source: str, owner: str) -> Job:
        """Queue a sync of ``source`` (the one already queued or running, if there is one)."""
        return self.jobs.sync_pending(collection, source) or self.jobs.submit(collection, owner, [], {}, source=source)

    def _schedule_syncs(self) -> None:
        """Queue every due source's sync, through the one job worker: syncs never run beside an
        upload of the same collection, nor two at once."""
        from ragtune.ingest.sources import due_sources

        while not self._stop_scheduler.wait(self.config.sync_tick_s):
            for coll in Collection.list(self.home):
                try:  # the manifest alone: no collection's models are loaded just to look
                    due = due_sources(coll)
                except Exception:  # a collection deleted meanwhile, a broken manifest: the others go on
                    log.exception("source scheduler: collection %s", coll.name)
                    due = []
                finally:
                    coll.close()
                for source in due:
                    self.sync_source(coll.name, source.name, "scheduler")

    def _schedule_flywheel(self) -> None:
        assert self.config.flywheel_every_minutes is not None
        while not self._stop_scheduler.wait(self.config.flywheel_every_minutes * 60):
            names = []
            for coll in Collection.list(self.home):  # names only: nothing is loaded just to look
                names.append(coll.name)
                coll.close()
            for name in names:
                if self._stop_scheduler.is_set():
                    return
                try:
                    self.run_flywheel(name)
                except Exception:  # one collection's failure is logged; the others still turn
                    log.exception("flywheel: collection %s", name)

    def run_flywheel(self, name: str) -> dict:
        """One flywheel turn on collection ``name`` (it decides whether a run is due), in this
        process: the embedded store has one owner, so training works on the served handle. The
        worker thread runs at the lowest CPU priority and holds the collection's write lock
        (uploads and syncs wait: the index must not change under a shadow build); queries go on.
        A run that promoted something drops the cached searcher and reader, so the next request
        is served by the new index, settings and reader."""
        from ragtune.flywheel import FlywheelConfig, run_flywheel

        with contextlib.suppress(OSError):  # Linux: nice applies to this thread alone
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        config = FlywheelConfig(**self.config.flywheel)
        h = self.handle(name)
        with h.write:
            generator = self.generators.get(h.collection.pipeline.generator, None) if config.synthetic else None
            record = run_flywheel(h.collection, self.home, config, generator)
            if record.get("ran") and any(v.get("promoted") for v in record["tasks"].values()):
                with self._lock:
                    h.searcher, h.reader = None, None
        if record.get("ran"):
            log.info("flywheel: %s run %s: %s", name, record["run"],
                     {t: v.get("promoted") for t, v in record["tasks"].items()})
        return record

    def _run_sync(self, job: Job, on_progress) -> dict:
        from ragtune.ingest.sources import sync_source

        h = self.handle(job.collection)
        assert job.source is not None
        with h.write:
            report = sync_source(h.collection, job.source, on_progress)
        keys = ("seen", "indexed", "updated", "relabelled", "unchanged", "deleted", "skipped", "chunks", "seconds")
        return {**{k: getattr(report, k) for k in keys}, "failed": report.failed,
                "failures": [{"source": s, "reason": r} for s, r in report.failures[:100]]}

    def _run_job(self, job: Job, on_progress) -> dict:
        from ragtune.ingest.sync import ingest
        from ragtune.types import Acl

        if job.source is not None:
            return self._run_sync(job, on_progress)
        h = self.handle(job.collection)
        acl = Acl.from_dict(job.acl)
        staged = self.staging_dir(job.collection, job.id)
        totals = {"indexed": 0, "updated": 0, "relabelled": 0, "unchanged": 0, "chunks": 0}
        failures: list[dict] = []
        superseded: list[dict] = []
        with h.write:
            for n, rel in enumerate(job.files, start=1):
                on_progress("files", n - 1, len(job.files))
                if newer := self.jobs.newer_upload(job, rel):
                    superseded.append({"source": Path(rel).name, "by_job": newer})
                    continue
                target = self.upload_dir(job.collection) / rel  # one root per upload name: a re-upload replaces it
                if (staged / rel).exists():  # absent only when a restart comes after the copy below
                    target.parent.mkdir(parents=True, exist_ok=True)
                    part = target.with_name(f".{target.name}.{job.id}.part")
                    shutil.copyfile(staged / rel, part)
                    part.replace(target)
                report = ingest(h.collection, target, acl, record_acls=job.record_acls)
                for k in totals:
                    totals[k] += getattr(report, k)
                failures += [{"source": Path(s).name, "reason": r} for s, r in report.failures]
            on_progress("files", len(job.files), len(job.files))
        shutil.rmtree(staged, ignore_errors=True)
        return {**totals, "failed": len(failures), "failures": failures, "superseded": superseded}

    def close(self) -> None:
        self._stop_scheduler.set()
        if self._scheduler is not None:
            self._scheduler.join(timeout=30)
        if self._flywheel is not None:
            self._flywheel.join(timeout=1)  # daemon: a run cut short here dies before or after its atomic promote
        self.jobs.stop()
        with self._lock:
            for h in self._handles.values():
                with h.write:
                    h.collection.close()
            self._handles.clear()
        self.keys.close()
        self.feedback.close()
