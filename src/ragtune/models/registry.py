"""Versioned trained models: ``$RAGTUNE_HOME/models/<kind>/<collection>/<version>/``.

Each version is a plain Hugging Face / sentence-transformers folder plus ``meta.json`` (base
model, method, training data, hyper-parameters, metrics, size, time), so it loads with the
usual libraries and can be copied anywhere. A version folder appears only once complete (it is
written as ``<version>.tmp`` and renamed).

Example:
    >>> import tempfile
    >>> from ragtune.models.registry import ModelRegistry
    >>> reg = ModelRegistry(tempfile.mkdtemp(), "embedder", "handbook")
    >>> with reg.new_version() as (version, folder):
    ...     _ = (folder / "config.json").write_text("{}")
    ...     reg.describe(folder, base="all-MiniLM-L6-v2", method="full")
    >>> version, [m["version"] for m in reg.list()], reg.get("v1")["method"]
    ('v1', ['v1'], 'full')
"""

from __future__ import annotations

import json
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from ragtune.config import ragtune_home

KINDS = ("embedder", "reranker")


class ModelRegistry:
    def __init__(self, home: str | Path | None, kind: str, collection: str):
        if kind not in KINDS:
            raise ValueError(f"unknown model kind {kind!r}; use one of {KINDS}")
        self.kind = kind
        self.root = ragtune_home(home) / "models" / kind / collection

    def path(self, version: str) -> Path:
        path = self.root / version
        if not (path / "meta.json").is_file():
            known = ", ".join(m["version"] for m in self.list()) or "none"
            raise LookupError(f"no {self.kind} version {version!r} in {self.root} (known: {known})")
        return path

    def get(self, version: str) -> dict[str, Any]:
        return json.loads((self.path(version) / "meta.json").read_text())

    def list(self) -> list[dict[str, Any]]:
        if not self.root.exists():
            return []
        out = [json.loads((p / "meta.json").read_text()) for p in self.root.iterdir()
               if p.is_dir() and (p / "meta.json").is_file()]
        return sorted(out, key=lambda m: int(m["version"][1:]) if m["version"][1:].isdigit() else 0)

    def _next(self) -> str:
        used = {p.name.removesuffix(".tmp") for p in self.root.iterdir()} if self.root.exists() else set()
        n = 1
        while f"v{n}" in used:
            n += 1
        return f"v{n}"

    @contextmanager
    def new_version(self) -> Iterator[tuple[str, Path]]:
        """Yield (version, folder to write into); the version exists only if the block succeeds."""
        self.root.mkdir(parents=True, exist_ok=True)
        version = self._next()
        tmp = self.root / f"{version}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            yield version, tmp
            meta_path = tmp / "meta.json"
            meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
            meta.update(version=version, kind=self.kind, path=str(self.root / version),
                        size_bytes=sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file()))
            meta_path.write_text(json.dumps(meta, indent=2, default=str))
            tmp.rename(self.root / version)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    @staticmethod
    def describe(folder: Path, **meta: Any) -> None:
        """Write what a version is (merged with what ``new_version`` adds)."""
        meta.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%S"))
        (folder / "meta.json").write_text(json.dumps(meta, indent=2, default=str))

    def update(self, version: str, **meta: Any) -> None:
        path = self.path(version) / "meta.json"
        data = json.loads(path.read_text())
        data.update(meta)
        path.write_text(json.dumps(data, indent=2, default=str))
