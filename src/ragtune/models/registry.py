"""Registries of trained artefacts on disk: one folder each, plus ``meta.json`` (base model,
method, training data, hyper-parameters, metrics, size, time). A folder appears only once
complete: it is written as ``<key>.tmp`` and renamed.

- :class:`ModelRegistry`: versioned embedders / rerankers of a collection,
  ``$RAGTUNE_HOME/models/<kind>/<collection>/v<N>/`` (Hugging Face / sentence-transformers folders);
- :class:`~ragtune.models.adapters.AdapterRegistry`: named PEFT adapters of the local LLM.

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
from ragtune.errors import InputError, NotFoundError

KINDS = ("embedder", "reranker", "reader")


def is_main_process() -> bool:
    """False in the non-zero ranks of a torchrun / accelerate launch (they set RANK)."""
    import os

    return int(os.environ.get("RANK", "0")) == 0


def _wait_for_rank0(final: Path, timeout: float = 1800.0) -> None:
    """Block until rank 0 has published ``final`` (a barrier when the process group is up)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        return
    deadline = time.monotonic() + timeout
    while not (final / "meta.json").is_file():
        if time.monotonic() > deadline:
            raise TimeoutError(f"rank 0 did not publish {final} within {timeout:.0f} s")
        time.sleep(0.5)


def _release_other_ranks() -> None:
    """Rank 0's side of :func:`_wait_for_rank0` (nothing to do outside a process group)."""
    import os

    if "RANK" not in os.environ:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


class FolderRegistry:
    """Folders under ``root`` keyed by name; ``key_field`` names the key inside meta.json."""

    key_field = "name"
    what = "entry"

    def __init__(self, root: Path):
        self.root = root

    def path(self, key: str) -> Path:
        path = self.root / key
        if not (path / "meta.json").is_file():
            known = ", ".join(m[self.key_field] for m in self.list()) or "none"
            raise NotFoundError(f"no {self.what} {key!r} in {self.root} (known: {known})")
        return path

    def exists(self, key: str) -> bool:
        return (self.root / key / "meta.json").is_file()

    def get(self, key: str) -> dict[str, Any]:
        return json.loads((self.path(key) / "meta.json").read_text())

    def list(self) -> list[dict[str, Any]]:
        if not self.root.exists():
            return []
        return sorted((json.loads((p / "meta.json").read_text()) for p in self.root.iterdir()
                       if p.is_dir() and (p / "meta.json").is_file()), key=self._order)

    def _order(self, meta: dict) -> Any:
        return meta[self.key_field]

    def update(self, key: str, **meta: Any) -> None:
        path = self.path(key) / "meta.json"
        data = json.loads(path.read_text())
        data.update(meta)
        path.write_text(json.dumps(data, indent=2, default=str))

    def delete(self, key: str) -> None:
        shutil.rmtree(self.path(key))

    @staticmethod
    def describe(folder: Path, **meta: Any) -> None:
        """Write what an entry is (merged with the key, path and size added on completion)."""
        meta.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%S"))
        (folder / "meta.json").write_text(json.dumps(meta, indent=2, default=str))

    @contextmanager
    def _atomic(self, key: str, **extra: Any) -> Iterator[Path]:
        final = self.root / key
        if not is_main_process():
            # A data-parallel launch (torchrun / accelerate): every rank trains, rank 0 alone
            # publishes the result; the others write into scratch, then wait until it is there,
            # so that every rank reads the same published entry afterwards.
            import tempfile

            with tempfile.TemporaryDirectory(prefix="ragtune-rank-") as scratch:
                yield Path(scratch)
            _wait_for_rank0(final)
            return
        tmp = self.root / f"{key}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            yield tmp
            meta_path = tmp / "meta.json"
            meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
            meta.update({self.key_field: key, "path": str(final), **extra,
                         "size_bytes": sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file() and f.name != "meta.json")})
            meta_path.write_text(json.dumps(meta, indent=2, default=str))
            if final.exists():
                shutil.rmtree(final)
            tmp.rename(final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _release_other_ranks()


class ModelRegistry(FolderRegistry):
    key_field = "version"

    def __init__(self, home: str | Path | None, kind: str, collection: str):
        if kind not in KINDS:
            raise InputError(f"unknown model kind {kind!r}; use one of {KINDS}")
        self.kind = kind
        self.what = f"{kind} version"
        super().__init__(ragtune_home(home) / "models" / kind / collection)

    def _order(self, meta: dict) -> Any:
        return int(meta["version"][1:]) if meta["version"][1:].isdigit() else 0

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
        with self._atomic(version, kind=self.kind) as folder:
            yield version, folder
