"""Encoder backends chosen by measurement (models/encoders.py): the real MiniLM exported to ONNX
and run by ONNX Runtime, measured against PyTorch float32 on real texts, the choice recorded per
model and machine, used by a new embedder and by ingest on its own."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ragtune.config import EmbedderConfig, PipelineConfig
from ragtune.models.encoders import BackendMeasure, available, choose, measure, recorded_choice

# Real models, real servers, subprocesses or training: `make test` runs them, `make test-fast` does not.
pytestmark = pytest.mark.slow

TEXTS = [f"Policy {i}: staff in team {i % 7} book {w} through the portal and keep receipts for {i % 5 + 1} years."
         for i, w in enumerate(["travel", "laptops", "parking", "training", "leave", "printers"] * 8)]


def test_the_choice_is_the_fastest_backend_that_keeps_the_neighbours():
    fast_but_wrong = BackendMeasure("onnx-int8", 50.0, 5.0, 0.95)
    assert choose([BackendMeasure("torch", 10, 1, 1), fast_but_wrong]) == "torch"
    assert choose([BackendMeasure("torch", 10, 1, 1), fast_but_wrong, BackendMeasure("onnx", 20, 2, 0.995)]) == "onnx"
    assert choose([BackendMeasure("torch", 10, 1, 1), BackendMeasure("onnx", 0, 0, 0, "export failed")]) == "torch"


def test_onnx_runs_minilm_faithfully_and_the_recorded_choice_is_used(tmp_path, embedder):
    from ragtune.models.embedder import Embedder
    from ragtune.models.encoders import record_choice, with_backend

    assert {"onnx", "onnx-int8"} <= set(available("cpu"))
    cache = tmp_path / "encoders"
    onnx = with_backend(embedder.model, "onnx", cache)
    ref = embedder.model.encode(TEXTS, normalize_embeddings=True)
    got = onnx.encode(TEXTS, normalize_embeddings=True)
    assert np.min(np.sum(ref * got, axis=1)) > 0.9999  # the same vectors, not merely similar ones
    assert embedder.model[0].__class__.__name__ == "Transformer"  # the PyTorch model is left as it was

    measures = {m.backend: m for m in measure(embedder.model, TEXTS, ["torch", "onnx", "onnx-int8"], cache)}
    assert measures["onnx"].error is None and measures["onnx"].overlap >= 0.99
    assert measures["onnx-int8"].error is None and 0 < measures["onnx-int8"].overlap <= 1
    record = record_choice(cache, embedder.model, list(measures.values()), texts=len(TEXTS))
    assert recorded_choice(cache, embedder.model) == record

    # Whatever was measured fastest, a new `auto` embedder with that cache runs it.
    forced = [BackendMeasure("torch", 1, 1, 1), BackendMeasure("onnx", 9, 9, 0.999)]
    record_choice(cache, embedder.model, forced)
    auto = Embedder(EmbedderConfig(), cache=cache)
    assert auto.backend == "onnx" and auto.encoder is not auto.model
    assert np.allclose(auto.embed_documents(TEXTS[:4]), embedder.embed_documents(TEXTS[:4]), atol=1e-4)
    assert Embedder(EmbedderConfig(backend="torch"), cache=cache).backend == "torch"  # an explicit choice wins
    assert Embedder(EmbedderConfig(), cache=None).backend == "torch"


def test_ingest_measures_once_and_status_shows_the_choice(tmp_path, embedder):
    from typer.testing import CliRunner

    from ragtune.cli import app
    from ragtune.collection import Collection
    from ragtune.ingest.sync import ingest
    from ragtune.types import Acl

    docs = tmp_path / "docs"
    docs.mkdir()
    for i, text in enumerate(TEXTS):
        (docs / f"p{i}.md").write_text(text)
    home = tmp_path / "home"
    coll = Collection.create(home, "enc", PipelineConfig().with_overrides(
        ["ingest.measure_encoder_after=20", "ingest.batch_chunks=8"]))
    try:
        ingest(coll, docs, Acl(public=True))
        record = recorded_choice(coll.encoder_cache, coll.embedder.model)
        assert record is not None and record["texts"] >= 20
        assert coll.embedder.backend == record["backend"]
        assert {m["backend"] for m in record["measures"]} >= {"torch", "onnx", "onnx-int8"}
    finally:
        coll.close()
    out = CliRunner().invoke(app, ["status", "-c", "enc", "--home", str(home), "--json"])
    assert out.exit_code == 0, out.output
    enc = json.loads(out.output)["encoder"]
    assert enc["configured"] == "auto" and enc["chosen"] == record["backend"] and enc["measures"]


def test_a_query_adapter_router_stays_on_pytorch(tmp_path, embedder):
    """A query-side adapter starts with a Router (two paths, one per side), which no other backend
    can replace: it is listed, measured and run on PyTorch only, with a clear error if forced."""
    from ragtune.models.embedder import Embedder
    from ragtune.models.encoders import model_key, with_backend
    from ragtune.train.embedder import _query_adapter_model

    router = _query_adapter_model(embedder.model)
    assert available("cpu", router) == ["torch"] and "onnx" in available("cpu", embedder.model)
    with pytest.raises(ValueError, match="Router"):
        with_backend(router, "onnx", tmp_path)
    folder = tmp_path / "adapter"
    router.save(str(folder))
    emb = Embedder(EmbedderConfig(model=str(folder)), cache=tmp_path / "encoders")
    assert emb.backend == "torch" and emb.encoder is emb.model
    assert len(model_key(router)) == 16
    vecs = emb.embed_documents(TEXTS[:3])
    assert vecs.shape == (3, 384) and np.allclose((vecs ** 2).sum(axis=1), 1.0, atol=1e-5)
