"""kill -9 in the middle of an ingest, then re-run: exactly the right chunks, none lost or doubled."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ragtune.collection import Collection
from ragtune.config import PipelineConfig
from ragtune.ingest.sync import ingest
from ragtune.types import Acl

from conftest import run_cli

# Real models, real servers, subprocesses or training: `make test` runs them, `make test-fast` does not.
pytestmark = pytest.mark.slow

OVERRIDES = ["ingest.batch_chunks=3", "chunking.chunk_size=24", "chunking.chunk_overlap=4"]
TOPICS = ["vaccines", "budgets", "laptops", "parking", "holidays", "security", "printers", "coffee"]


def write_docs(root: Path, n: int, version: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        body = " ".join(f"Note {j} (v{version}) on {topic} for team {i}: keep records of every {topic} decision."
                        for j in range(4))
        (root / f"doc{i:03d}.md").write_text(f"# {topic.title()} {i}\n\n{body}")


def snapshot(home: Path, name: str) -> tuple[list[tuple[str, str]], dict]:
    with Collection.open(home, name) as coll:
        points = sorted((p["point_id"], p["doc_hash"]) for p in coll.store.scroll_payloads(["doc_hash"]))
        return points, coll.manifest.stats()


def indexed_count(home: Path, name: str) -> int:
    db = home / "collections" / name / "manifest.sqlite"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=1) as con:
            return con.execute("SELECT COUNT(*) FROM documents WHERE state='indexed' AND indexed_at > ?",
                               (START[0],)).fetchone()[0]
    except sqlite3.OperationalError:  # schema not created yet
        return 0


START = [0.0]


def ingest_and_kill(home: Path, src: Path, name: str, after_docs: int) -> None:
    """Start a real CLI ingest and SIGKILL it once it has committed `after_docs` documents."""
    START[0] = time.time()
    cmd = [sys.executable, "-m", "ragtune", "ingest", str(src), "-c", name, "--public", "--json"]
    for o in OVERRIDES:
        cmd += ["--set", o]
    proc = subprocess.Popen(cmd, env={**os.environ, "RAGTUNE_HOME": str(home)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while indexed_count(home, name) < after_docs:
        if proc.poll() is not None:
            pytest.fail(f"ingest ended before it could be killed: {proc.stderr.read().decode()[-2000:]}")
        if time.time() > deadline:
            proc.kill()
            pytest.fail("ingest made no progress")
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL


def reference(home: Path, src: Path, name: str):
    with Collection.create(home, name, PipelineConfig().with_overrides(OVERRIDES)) as coll:
        ingest(coll, src, Acl(public=True))
    return snapshot(home, name)


@pytest.mark.slow
def test_kill_mid_ingest_then_rerun_is_exact(tmp_path):
    home, src = tmp_path / "home", tmp_path / "corpus"
    write_docs(src, 40, version=1)

    # First ingest killed part-way, then completed.
    ref_points, ref_stats = reference(home, src, "ref")
    ingest_and_kill(home, src, "kb", after_docs=7)
    points_killed, stats_killed = snapshot(home, "kb")
    assert 7 <= stats_killed["documents"] - stats_killed["pending"] < 40, "killed part-way"
    assert 0 < len(points_killed) < len(ref_points)
    cmd = ["ingest", str(src), "-c", "kb", "--public"] + [a for o in OVERRIDES for a in ("--set", o)]
    run_cli(*cmd, home=home)
    points, stats = snapshot(home, "kb")
    assert stats["pending"] == 0 and stats["documents"] == 40
    assert points == ref_points, "same point ids and versions as a clean ingest: none lost, none doubled"
    assert len(points) == len(set(p for p, _ in points)) == ref_stats["chunks"]

    # Edit half, delete some, add some; kill that run part-way, then complete it.
    write_docs(src, 20, version=2)
    for i in range(35, 40):
        (src / f"doc{i:03d}.md").unlink()
    write_docs(tmp_path / "extra", 3, version=3)
    for f in (tmp_path / "extra").iterdir():
        f.rename(src / f"new-{f.name}")
    ref_points, ref_stats = reference(home, src, "ref2")
    ingest_and_kill(home, src, "kb", after_docs=5)
    assert snapshot(home, "kb")[0] != ref_points, "killed before the edit run finished"
    run_cli(*cmd, home=home)
    points, stats = snapshot(home, "kb")
    assert stats["pending"] == 0 and stats["documents"] == 38
    assert points == ref_points
