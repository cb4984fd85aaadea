"""Dense embedder: batched, L2-normalised sentence-transformers encoding.

Example:
    >>> from ragtune.config import EmbedderConfig
    >>> from ragtune.models.embedder import Embedder
    >>> emb = Embedder(EmbedderConfig())
    >>> vecs = emb.embed_documents(["Qdrant stores vectors.", "BM25 ranks words."])
    >>> vecs.shape, round(float((vecs[0] ** 2).sum()), 3)
    ((2, 384), 1.0)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ragtune.config import EmbedderConfig
from ragtune.models.encoders import available, recorded_choice, swappable, with_backend
from ragtune.models.loading import sentence_transformer


class Embedder:
    """``model`` is the PyTorch SentenceTransformer (what training and export use); ``encoder`` is
    what encodes: the same model on the backend ``config.backend`` names, or for ``auto`` the one
    measured fastest on this machine without moving search results (:mod:`.encoders`; recorded
    under ``cache``, float32 PyTorch until a measurement exists)."""

    def __init__(self, config: EmbedderConfig, cache: Path | None = None):
        self.config = config
        self.cache = cache
        self.model = sentence_transformer(config.model, config.device, config.max_seq_length)
        self.backend = self._backend()
        self.encoder = self.model if self.backend == "torch" or cache is None else \
            with_backend(self.model, self.backend, cache)

    def _backend(self) -> str:
        if self.config.backend != "auto":
            return self.config.backend
        if self.cache is None or self.config.devices or not swappable(self.model):
            return "torch"
        recorded = recorded_choice(self.cache, self.model)
        # A record from before an extra was uninstalled (or another device) falls back to PyTorch.
        device = self.model.device.type
        if recorded and recorded["backend"] in available("cpu" if device == "cpu" else str(self.model.device)):
            return recorded["backend"]
        return "torch"

    def use_backend(self, backend: str) -> None:
        """Encode with ``backend`` from now on (after a measurement chose it)."""
        if self.cache is None:
            raise ValueError("an embedder without a cache folder runs PyTorch only")
        self.encoder, self.backend = with_backend(self.model, backend, self.cache), backend

    @property
    def dim(self) -> int:
        return int(self.model.get_embedding_dimension())

    @property
    def tokenizer(self):
        return self.model.tokenizer

    @property
    def max_seq_length(self) -> int:
        return int(self.model.max_seq_length)

    # encode_document / encode_query: identical for a symmetric model; an asymmetric one (a
    # query-side adapter, a model with query/document prompts) gets the right side for each.
    def embed_documents(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        return self.encoder.encode_document(
            texts,
            batch_size=self.config.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=show_progress,
            pool=self._pool(),
        ).astype(np.float32)

    def _pool(self):
        """sentence-transformers' multi-process pool over ``config.devices`` (started once, on
        first use, stopped when this embedder is garbage-collected or the process exits)."""
        if len(self.config.devices) < 2:
            return None
        if getattr(self, "_workers", None) is None:
            import weakref

            self._workers = self.model.start_multi_process_pool(list(self.config.devices))
            weakref.finalize(self, type(self.model).stop_multi_process_pool, self._workers)
        return self._workers

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        return self.encoder.encode_query(texts, batch_size=self.config.batch_size, normalize_embeddings=True,
                                       convert_to_numpy=True, show_progress_bar=False).astype(np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_queries([text])[0]
