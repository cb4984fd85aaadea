"""Choose how this collection's embedder runs here, by measuring it on the collection's own texts.

``ragtune models speed -c C`` runs it on demand; ingest runs it once by itself when an ``auto``
embedder has embedded ``ingest.measure_encoder_after`` chunks with no measurement recorded for
this model on this machine (the rest of that ingest, and every later one, use the choice).

Example:
    >>> from ragtune.collection.encoder import tune_encoder
    >>> tune_encoder(coll, sample=256)["backend"]  # doctest: +SKIP
    'onnx'
"""

from __future__ import annotations

import random
from typing import Any

from ragtune.collection.collection import Collection
from ragtune.models.encoders import MIN_OVERLAP, available, folder_key, measure, record_choice, recorded_choice


def tune_encoder(coll: Collection, sample: int = 256, min_overlap: float = MIN_OVERLAP, seed: int = 0) -> dict[str, Any]:
    """Measure every backend available here on ``sample`` of the collection's chunk texts, record
    the choice (fastest with top-10 overlap ≥ ``min_overlap`` vs float32) and switch to it."""
    texts = [p["search_text"] for p in coll.store.scroll_payloads(["search_text"]) if p.get("search_text")]
    if len(texts) < 20:
        raise ValueError(f"collection {coll.name!r} holds {len(texts)} chunks; measuring needs at least 20")
    texts = random.Random(seed).sample(texts, min(sample, len(texts)))
    embedder = coll.embedder
    device = "cpu" if embedder.model.device.type == "cpu" else str(embedder.model.device)
    measures = measure(embedder.model, texts, available(device, embedder.model), coll.encoder_cache,
                       batch_size=min(embedder.config.batch_size, 32))
    data = record_choice(coll.encoder_cache, embedder.model, measures, min_overlap, len(texts))
    if embedder.config.backend == "auto":
        embedder.use_backend(data["backend"])
    return data


def encoder_status(coll: Collection) -> dict[str, Any]:
    """What ``ragtune status`` shows: the configured backend and, where measured, the choice and
    its figures (read from the record: no model is loaded)."""
    from pathlib import Path

    from ragtune.models.loading import resolve_model

    cfg = coll.pipeline.embedder
    out: dict[str, Any] = {"configured": cfg.backend}
    path = Path(resolve_model(cfg.model))
    record = recorded_choice(coll.encoder_cache, folder_key(path)) if path.is_dir() else None
    if record:
        out.update(chosen=record["backend"], measured=record["measured"], texts=record["texts"],
                   measures=record["measures"])
    return out
