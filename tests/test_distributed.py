"""Scale-out of the compute side, on this CPU machine: a training command launched data-parallel
with torchrun (two processes, gloo), and corpus embedding in worker processes."""

from __future__ import annotations

import pytest

import json
import os
import subprocess
import sys

import numpy as np

from ragtune.config import EmbedderConfig
from ragtune.models.embedder import Embedder
from tests.conftest import run_cli

# Real models, real servers, subprocesses or training: `make test` runs them, `make test-fast` does not.
pytestmark = pytest.mark.slow


def test_torchrun_trains_once_and_rank0_alone_publishes(tmp_path, home):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "boxes.txt").write_text("Each box has a numeric code written on its lid.")
    run_cli("ingest", str(docs), "-c", "boxes", "--public", home=home)
    data = tmp_path / "tiny.jsonl"
    data.write_text("".join(json.dumps({
        "prompt": [{"role": "user", "content": f"Context: The code of box {i} is {i * 7}.\nQuestion: What is the code of box {i}?"}],
        "completion": [{"role": "assistant", "content": f"{i * 7} [1]"}]}) + "\n" for i in range(16)))
    env = {**os.environ, "RAGTUNE_HOME": str(home)}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "ragtune",
                           "train", "generator", "-c", "boxes", "--data", str(data), "--name", "ddp", "--max-steps", "2",
                           "--batch-size", "2", "--json"], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    meta = json.loads(proc.stdout)  # one JSON document: only rank 0 reports
    assert meta["processes"] == 2 and meta["steps"] == 2
    assert sorted(p.name for p in (home / "adapters").iterdir()) == ["ddp"]  # published once, no leftovers
    listed = json.loads(run_cli("adapters", "list", "--json", home=home).stdout)
    assert [a["name"] for a in listed] == ["ddp"]


def test_embedding_in_worker_processes_matches_one_process():
    texts = [f"passage {i}: vaccines, laptops and parking permits" for i in range(200)]
    one = Embedder(EmbedderConfig()).embed_documents(texts)
    two = Embedder(EmbedderConfig(devices=["cpu", "cpu"])).embed_documents(texts)
    assert two.shape == one.shape and np.allclose(one, two, atol=1e-5)
