"""The store survives the process: ingest in one process, search in another; one owner at a time."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from ragtune.collection import Collection
from ragtune.index.base import StoreBusyError

from conftest import run_cli

# Real models, real servers, subprocesses or training: `make test` runs them, `make test-fast` does not.
pytestmark = pytest.mark.slow


def test_ingest_then_search_in_new_processes(tmp_path):
    home, src = tmp_path / "home", tmp_path / "kb"
    src.mkdir()
    (src / "wifi.md").write_text("# Wi-Fi\n\nThe guest Wi-Fi password rotates every Monday.")
    (src / "desk.md").write_text("# Desks\n\nHot desks are booked through the facilities portal.")
    run_cli("ingest", str(src), "-c", "kb", "--acl-group", "staff", home=home)
    out = run_cli("search", "when does the wifi password change", "-c", "kb", "--group", "staff", "--json", "--explain",
                  home=home)
    hits = json.loads(out.stdout)
    assert hits[0]["doc_id"] == "kb/wifi.md" and "Monday" in hits[0]["text"]
    assert {"dense", "bm25", "hybrid"} <= set(hits[0]["ranks"])
    outsider = run_cli("search", "wifi password", "-c", "kb", "--json", home=home)
    assert json.loads(outsider.stdout) == []


def test_second_owner_gets_a_clear_busy_error(tmp_path, make_collection, home):
    coll = make_collection("busy")
    coll.store  # this test process now owns the store
    proc = subprocess.run(
        [sys.executable, "-m", "ragtune", "search", "x", "-c", "busy", "--home", str(home)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "is in use by pid" in proc.stderr and "Traceback" not in proc.stderr
    with pytest.raises(StoreBusyError, match="in use by"):
        Collection.delete(home, "busy")
    coll.close()
    Collection.delete(home, "busy")
    assert Collection.list(home) == []
