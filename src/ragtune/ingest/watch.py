"""Continuous sync: folder sources follow file-system events, every source its schedule.

A :class:`SourceWatcher` runs syncs one at a time for one collection (the store has one writer):
a folder source is synced ``debounce_s`` after the last change under it (``watchdog`` events;
editors write a file in bursts), and every source whose interval passed is synced on schedule —
for folders that is the periodic full reconciliation that catches what events miss (a network
share, a watcher started after the change). A sync is an ordinary :func:`sync_source`, so a watcher
killed mid-way loses and duplicates nothing.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from watchdog.events import FileSystemEventHandler

from ragtune.collection import Collection
from ragtune.errors import RagtuneError
from ragtune.ingest.sources import due_sources, list_sources, sync_source
from ragtune.ingest.sync import IngestReport

# (source name, report or None, error message or None): what each sync did.
OnSync = Callable[[str, IngestReport | None, str | None], None]


@dataclass
class SourceWatcher:
    collection: Collection
    debounce_s: float = 0.5
    tick_s: float = 0.2
    reconcile_s: float = 300.0  # full reconciliation of a folder source without its own schedule
    on_sync: OnSync | None = None
    _dirty: dict[str, float] = field(default_factory=dict)  # folder source → time of its latest event
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self, until: Callable[[], bool] | None = None) -> None:
        """Watch until :meth:`stop` (or ``until()`` is true); an initial sync of every source first."""
        from watchdog.observers import Observer

        observer = Observer()
        for source in list_sources(self.collection):
            if source.type == "folder":
                path = Path(source.options["path"]).expanduser().resolve()
                observer.schedule(_Handler(self, source.name), str(path if path.is_dir() else path.parent), recursive=True)
        observer.start()
        try:
            for source in list_sources(self.collection):
                self._sync(source.name)
            while not self._stop.is_set() and not (until and until()):
                for name in self._due():
                    self._sync(name)
                self._stop.wait(self.tick_s)
        finally:
            observer.stop()
            observer.join()

    def stop(self) -> None:
        self._stop.set()

    def touched(self, name: str) -> None:
        with self._lock:
            self._dirty[name] = time.monotonic()

    def _due(self) -> list[str]:
        now = time.monotonic()
        with self._lock:
            settled = [n for n, t in self._dirty.items() if now - t >= self.debounce_s]
            for n in settled:
                del self._dirty[n]
        wall = time.time()
        unscheduled = [s.name for s in list_sources(self.collection) if s.type == "folder" and not s.every_s
                       and wall - s.status.get("last_attempt", 0.0) >= self.reconcile_s]
        return list(dict.fromkeys(settled + [s.name for s in due_sources(self.collection, wall)] + unscheduled))

    def _sync(self, name: str) -> None:
        try:
            report = sync_source(self.collection, name)
        except RagtuneError as e:  # recorded in the source's status; the other sources go on
            if self.on_sync:
                self.on_sync(name, None, str(e))
            return
        if self.on_sync:
            self.on_sync(name, report, None)


class _Handler(FileSystemEventHandler):
    """A watchdog handler marking its source dirty on any change but reads."""

    def __init__(self, watcher: SourceWatcher, name: str):
        super().__init__()
        self.watcher, self.name = watcher, name

    def dispatch(self, event) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        self.watcher.touched(self.name)
