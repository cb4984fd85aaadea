"""Background ingestion jobs: one worker thread, jobs run in submission order, each job's state
is a JSON file under ``$RAGTUNE_HOME/jobs/`` rewritten atomically on every change.

A job names files already saved on disk, in a staging folder of its own (an upload is written
there before the job is queued, and a later upload of the same name cannot change it), so a server
that dies mid-job loses nothing: on start it re-queues every job that was queued or running, in
submission order (``seq``, never file times, which progress saves touch), and ingestion itself is
idempotent (changed files only, deterministic chunk ids), so a re-run finishes the work without
duplicating any chunk. A file that a *newer* job also uploads is left to that job
(:meth:`JobQueue.newer_upload`): an old upload never brings back an ACL a newer one replaced.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
import traceback
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from ragtune.config import ragtune_home

# (job, on_progress) -> result dict; raises on failure
Runner = Callable[["Job", Callable[[str, int, int], None]], dict]


@dataclass
class Job:
    id: str
    collection: str
    owner: str  # the key id that submitted it: only it and admins may read the job
    files: list[str]  # upload names relative to the collection's upload folder ("files/a.md"), staged per job
    acl: dict[str, Any]
    record_acls: bool = False  # JSON/JSONL records' own "acl" fields apply (an admin opted in)
    source: str | None = None  # a sync of this source of the collection (no files)
    seq: int = 0  # submission order, kept across restarts
    status: str = "queued"  # queued | running | done | failed
    progress: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    error: str | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class JobQueue:
    def __init__(self, home: str | Path | None, runner: Runner):
        self.dir = ragtune_home(home) / "jobs"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.runner = runner
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._stopping = threading.Event()
        jobs = [Job(**json.loads(path.read_text())) for path in self.dir.glob("*.json")]
        for job in sorted(jobs, key=lambda j: (j.seq, j.created)):
            self._jobs[job.id] = job
            if job.status in ("queued", "running"):  # interrupted by a stop: run it again
                job.status = "queued"
                self._queue.put(job.id)
        self._seq = max((j.seq for j in jobs), default=0)
        self._thread = threading.Thread(target=self._work, daemon=True, name="ingest-jobs")
        self._thread.start()

    @staticmethod
    def new_id() -> str:
        """An id for a job about to be submitted (its files are staged under it first)."""
        return uuid.uuid4().hex[:16]

    def submit(self, collection: str, owner: str, files: list[str], acl: dict[str, Any], job_id: str | None = None,
               record_acls: bool = False, source: str | None = None) -> Job:
        with self._lock:
            self._seq += 1
            job = Job(id=job_id or self.new_id(), collection=collection, owner=owner, files=files, acl=acl,
                      record_acls=record_acls, seq=self._seq, source=source)
            self._jobs[job.id] = job
            self._save(job)
        self._queue.put(job.id)
        return job

    def newer_upload(self, job: Job, name: str) -> str | None:
        """The id of a later job (not failed) of the same collection that also uploads ``name``."""
        with self._lock:
            return next((j.id for j in sorted(self._jobs.values(), key=lambda j: -j.seq)
                         if j.seq > job.seq and j.collection == job.collection and j.status != "failed"
                         and name in j.files), None)

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def pending(self) -> list[Job]:
        """Jobs queued or running now, oldest first (what /metrics reports as ingestion lag)."""
        with self._lock:
            return sorted((j for j in self._jobs.values() if j.status in ("queued", "running")), key=lambda j: j.seq)

    def sync_pending(self, collection: str, source: str) -> Job | None:
        """The queued or running sync of this source, if any (a schedule never stacks up syncs)."""
        return next((j for j in self.pending() if j.collection == collection and j.source == source), None)

    def wait(self, job_id: str, timeout: float = 60.0) -> Job:
        deadline = time.monotonic() + timeout
        while (job := self.get(job_id)) is not None and job.status in ("queued", "running"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job.status} after {timeout} s")
            time.sleep(0.05)
        if job is None:
            raise LookupError(job_id)
        return job

    def stop(self, timeout: float = 300.0) -> None:
        """Finish the running job (its store writes flushed), start no other: queued jobs stay
        queued on disk and run at the next start."""
        self._stopping.set()
        self._queue.put(None)
        self._thread.join(timeout)

    def _save(self, job: Job) -> None:
        path = self.dir / f"{job.id}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(job.to_dict()))
        os.replace(tmp, path)

    def _update(self, job: Job, **changes: Any) -> None:
        with self._lock:
            for k, v in changes.items():
                setattr(job, k, v)
            self._save(job)

    def _work(self) -> None:
        while (job_id := self._queue.get()) is not None and not self._stopping.is_set():
            job = self.get(job_id)
            if job is None or job.status != "queued":
                continue
            self._update(job, status="running", started=time.time())
            last = [0.0]

            def on_progress(event: str, done: int, total: int, job=job) -> None:
                with self._lock:
                    job.progress = {"event": event, "done": done, "total": total}
                    if time.monotonic() - last[0] > 0.5 or done == total:  # bounded disk writes
                        last[0] = time.monotonic()
                        self._save(job)

            try:
                result = self.runner(job, on_progress)
                self._update(job, status="done", result=result, finished=time.time())
            except Exception as e:  # the job fails, the worker lives on
                self._update(job, status="failed", error=f"{type(e).__name__}: {e}", finished=time.time(),
                             result={"traceback": traceback.format_exc(limit=5)})
