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

import numpy as np

from ragtune.config import EmbedderConfig
from ragtune.models.loading import sentence_transformer


class Embedder:
    def __init__(self, config: EmbedderConfig):
        self.config = config
        self.model = sentence_transformer(config.model, config.device, config.max_seq_length)

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
        return self.model.encode_document(
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
        return self.model.encode_query(texts, batch_size=self.config.batch_size, normalize_embeddings=True,
                                       convert_to_numpy=True, show_progress_bar=False).astype(np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_queries([text])[0]
