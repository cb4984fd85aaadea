"""A collection's index versions: which versions exist, what embedded each, which one is live,
and every switch between them.

On disk (``collections/<name>/index/``): ``versions.json`` (one record per version), ``live``
(the live version's name) and ``history.jsonl`` (promotions and rollbacks, oldest first). Every
write is atomic (a temp file renamed over the old one), so a crash never leaves half a record.
This module only keeps the records; building a shadow and checking it before promotion need the
stores and live in ``shadow.py``.

Example:
    >>> import tempfile, pathlib
    >>> from ragtune.collection.versions import IndexVersions, VersionRecord
    >>> versions = IndexVersions(pathlib.Path(tempfile.mkdtemp()))
    >>> versions.set_live("v1")
    >>> versions.ensure_live_recorded("all-MiniLM-L6-v2")
    >>> v2 = versions.create(VersionRecord(embedder="models/embedder/c/v2", origin="shadow", source="v1"))
    >>> versions.mark_ready(v2, chunks=10).state
    'ready'
    >>> versions.promote(v2, reason="nDCG@10 +0.04"), versions.live
    ('v1', 'v2')
    >>> versions.rollback(), versions.live
    ('v1', 'v1')
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ragtune.errors import NotFoundError, StateError

READY, BUILDING = "ready", "building"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


@dataclass
class VersionRecord:
    """One index version. ``index`` names another version whose vectors this one shares (a
    query-side adapter); ``info`` keeps whatever else its maker recorded (model version, metrics)."""

    embedder: str
    origin: str = "ingest"  # ingest | shadow | migrate | train rag
    state: str = READY  # building | training | ready
    created: str = field(default_factory=_now)
    source: str | None = None  # the version (or collection/version) it was made from: "from" on disk
    index: str | None = None
    chunks: int | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"embedder": self.embedder, "created": self.created, "origin": self.origin}
        for key, value in (("from", self.source), ("index", self.index), ("chunks", self.chunks)):
            if value is not None:
                out[key] = value
        out["state"] = self.state
        return {**out, **self.info}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "VersionRecord":
        known = {f.name for f in fields(cls)} - {"source", "info"}
        data = dict(data)
        source = data.pop("from", None)
        kwargs = {k: data.pop(k) for k in list(data) if k in known}
        kwargs.setdefault("embedder", "")
        kwargs.setdefault("state", READY)  # versions recorded before states existed were ready
        return cls(source=source, info=data, **kwargs)


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class IndexVersions:
    """The records of one collection's ``index/`` folder."""

    def __init__(self, folder: Path):
        self.folder = folder

    # -- reading ---------------------------------------------------------------------------------
    @property
    def live(self) -> str:
        return (self.folder / "live").read_text().strip()

    def records(self) -> dict[str, VersionRecord]:
        path = self.folder / "versions.json"
        raw = json.loads(path.read_text()) if path.exists() else {}
        return {name: VersionRecord.from_dict(r) for name, r in raw.items()}

    def get(self, name: str) -> VersionRecord:
        records = self.records()
        if name not in records:
            raise NotFoundError(f"no index version {name!r} in {self.folder}; it has {sorted(records)}")
        return records[name]

    def find(self, name: str) -> VersionRecord | None:
        return self.records().get(name)

    def as_dicts(self) -> dict[str, dict[str, Any]]:
        """The records as ``versions.json`` holds them (a read-only view for reports and tests)."""
        return {name: r.to_dict() for name, r in self.records().items()}

    def history(self) -> list[dict]:
        path = self.folder / "history.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []

    def next_name(self) -> str:
        used = {p.name for p in self.folder.iterdir() if p.is_dir()} | set(self.records())
        n = 1
        while f"v{n}" in used:
            n += 1
        return f"v{n}"

    # -- writing ---------------------------------------------------------------------------------
    def _write(self, records: dict[str, VersionRecord]) -> None:
        write_atomic(self.folder / "versions.json",
                     json.dumps({name: r.to_dict() for name, r in records.items()}, indent=2) + "\n")

    def set_live(self, name: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        write_atomic(self.folder / "live", name + "\n")

    def save(self, name: str, record: VersionRecord) -> None:
        records = self.records()
        records[name] = record
        self._write(records)

    def replace_all(self, records: dict[str, VersionRecord]) -> None:
        self._write(records)

    def ensure_live_recorded(self, embedder: str) -> None:
        """Record the live version (collections made before versioning have no entry)."""
        if self.find(self.live) is None:
            self.save(self.live, VersionRecord(embedder=embedder, origin="ingest", state=READY))

    def create(self, record: VersionRecord, name: str | None = None) -> str:
        """Record a new version (recorded before it is built: a crashed build is visible, not orphaned)."""
        name = name or self.next_name()
        self.save(name, record)
        return name

    def update(self, name: str, **changes: Any) -> VersionRecord:
        """Change named fields of a record; unknown keys go to its ``info``."""
        record = self.get(name)
        known = {f.name for f in fields(VersionRecord)}
        for key, value in changes.items():
            if key in known:
                setattr(record, key, value)
            else:
                record.info[key] = value
        self.save(name, record)
        return record

    def mark_ready(self, name: str, **changes: Any) -> VersionRecord:
        return self.update(name, state=READY, **changes)

    def remove(self, name: str) -> None:
        records = self.records()
        records.pop(name, None)
        self._write(records)

    # -- switching -------------------------------------------------------------------------------
    def promote(self, name: str, reason: str = "") -> str | None:
        """Make ``name`` live; returns the version it replaced (None: it was live already).
        Callers check that its chunks still match the live ones first (``shadow.promote``)."""
        record = self.get(name)
        if record.state != READY:
            raise StateError(f"index version {name} is not ready (state {record.state}); build a new shadow")
        if name == self.live:
            return None
        return self._switch(name, "promote", reason)

    def rollback_target(self) -> str:
        """The version a rollback would make live: the one the last promotion not yet undone replaced."""
        stack: list[str] = []  # versions that promotions replaced; each rollback undoes the newest
        for entry in self.history():
            if entry["action"] == "promote":
                stack.append(entry["from"])
            elif entry["action"] == "rollback" and stack:
                stack.pop()
        if not stack:
            raise StateError(f"nothing to roll back to: no promotion in {self.folder} is left to undo")
        return stack[-1]

    def rollback(self, reason: str = "") -> str:
        """Make :meth:`rollback_target` live again; returns it."""
        target = self.rollback_target()
        self._switch(target, "rollback", reason)
        return target

    def _switch(self, name: str, action: str, reason: str) -> str:
        previous = self.live
        with (self.folder / "history.jsonl").open("a") as f:
            f.write(json.dumps({"time": _now(), "action": action, "from": previous, "to": name,
                                "reason": reason}) + "\n")
        self.set_live(name)
        return previous
