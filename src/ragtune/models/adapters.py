"""Named PEFT adapters of the local LLM: ``$RAGTUNE_HOME/adapters/<name>/`` (a standard PEFT
folder) plus ``meta.json`` (base model, method, data, hyper-parameters, metrics, size).

Example:
    >>> import tempfile
    >>> from ragtune.models.adapters import AdapterRegistry
    >>> reg = AdapterRegistry(tempfile.mkdtemp())
    >>> with reg.create("qgen") as folder:
    ...     _ = (folder / "adapter_config.json").write_text("{}")
    ...     reg.describe(folder, base="SmolLM2-135M-Instruct", method="lora")
    >>> [a["name"] for a in reg.list()], reg.get("qgen")["method"]
    (['qgen'], 'lora')
"""

from __future__ import annotations

import json
import re
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from ragtune.config import ragtune_home

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class AdapterRegistry:
    def __init__(self, home: str | Path | None = None):
        self.root = ragtune_home(home) / "adapters"

    def path(self, name: str) -> Path:
        path = self.root / name
        if not (path / "meta.json").is_file():
            known = ", ".join(a["name"] for a in self.list()) or "none"
            raise LookupError(f"no adapter {name!r} in {self.root} (known: {known})")
        return path

    def get(self, name: str) -> dict[str, Any]:
        return json.loads((self.path(name) / "meta.json").read_text())

    def list(self) -> list[dict[str, Any]]:
        if not self.root.exists():
            return []
        return [json.loads((p / "meta.json").read_text()) for p in sorted(self.root.iterdir())
                if p.is_dir() and (p / "meta.json").is_file()]

    @contextmanager
    def create(self, name: str, overwrite: bool = False) -> Iterator[Path]:
        """Yield a folder to write the adapter into; it replaces ``name`` only if the block succeeds."""
        if not _NAME.match(name):
            raise ValueError(f"adapter name {name!r}: use letters, digits, '.', '_' or '-'")
        final = self.root / name
        if final.exists() and not overwrite:
            raise FileExistsError(f"adapter {name!r} exists; pick another name or delete it first")
        tmp = self.root / f"{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            yield tmp
            meta_path = tmp / "meta.json"
            meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
            meta.update(name=name, path=str(final),
                        size_bytes=sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file() and f.name != "meta.json"))
            meta_path.write_text(json.dumps(meta, indent=2, default=str))
            if final.exists():
                shutil.rmtree(final)
            tmp.rename(final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    @staticmethod
    def describe(folder: Path, **meta: Any) -> None:
        meta.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%S"))
        (folder / "meta.json").write_text(json.dumps(meta, indent=2, default=str))

    def resolve(self, name_or_path: str) -> Path:
        """An adapter given by registry name or by folder path."""
        path = Path(name_or_path).expanduser()
        if (path / "adapter_config.json").exists():
            return path
        return self.path(name_or_path)
