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

import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ragtune.config import ragtune_home
from ragtune.errors import AlreadyExistsError, InputError
from ragtune.models.registry import FolderRegistry

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class AdapterRegistry(FolderRegistry):
    what = "adapter"

    def __init__(self, home: str | Path | None = None):
        super().__init__(ragtune_home(home) / "adapters")

    @contextmanager
    def create(self, name: str, overwrite: bool = False) -> Iterator[Path]:
        """Yield a folder to write the adapter into; it replaces ``name`` only if the block succeeds."""
        if not _NAME.match(name):
            raise InputError(f"adapter name {name!r}: use letters, digits, '.', '_' or '-'")
        if (self.root / name).exists() and not overwrite:
            raise AlreadyExistsError(f"adapter {name!r} exists; pick another name or delete it first")
        with self._atomic(name) as folder:
            yield folder

    def resolve(self, name_or_path: str) -> Path:
        """An adapter given by registry name or by folder path (a PEFT folder, or a whole model
        folder from the ``full`` method). A name its gate refused is not served."""
        path = Path(name_or_path).expanduser()
        if is_peft_folder(path) or (path / "config.json").exists():
            return path
        found = self.path(name_or_path)
        why = self.refusal(name_or_path)
        if why:
            raise InputError(f"adapter {name_or_path!r} was refused by its gate ({why}); it is kept for "
                             "inspection (`ragtune adapters show`), not served: train it longer or on more pairs")
        return found

    def refusal(self, name: str) -> str | None:
        return refusal(self.get(name))


def refusal(meta: dict) -> str | None:
    """Why an adapter's gate refused it (e.g. held-out preference accuracy that did not rise), or None."""
    gate = meta.get("gate")
    return gate.get("why", "refused") if isinstance(gate, dict) and gate.get("promote") is False else None


def is_peft_folder(path: Path) -> bool:
    return (path / "adapter_config.json").exists()
