"""Shared fixtures. Everything is real: the packaged MiniLM, Qdrant Edge on disk, subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def embedder():
    """The real default embedder, loaded once for the whole session (the loader caches it)."""
    from ragtune.config import EmbedderConfig
    from ragtune.models.embedder import Embedder

    return Embedder(EmbedderConfig())


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def make_collection(home, embedder):
    """Create a collection under the test's home, closed at the end of the test."""
    from ragtune.collection import Collection
    from ragtune.config import PipelineConfig

    opened = []

    def make(name: str = "test", overrides: list[str] | None = None) -> Collection:
        coll = Collection.create(home, name, PipelineConfig().with_overrides(overrides), exist_ok=True)
        opened.append(coll)
        return coll

    yield make
    for coll in opened:
        coll.close()


def run_cli(*args: str, home: Path, check: bool = True, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """Run the real `ragtune` CLI in a separate process."""
    env = {**os.environ, "RAGTUNE_HOME": str(home)}
    proc = subprocess.run(
        [sys.executable, "-m", "ragtune", *args], capture_output=True, text=True, env=env, timeout=timeout, **kw
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"ragtune {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc
