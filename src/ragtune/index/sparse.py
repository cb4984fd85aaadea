"""BM25 as sparse vectors, for engines whose keyword side is a sparse-vector index (a Qdrant
server or its local mode) rather than a scored text index.

A document's vector holds, per term, the BM25 term-frequency factor
``tf·(k1+1) / (tf + k1·(1 - b + b·len/avg_len))``; a query's holds 1 per distinct term, and the
engine multiplies in the IDF from its own live document counts (Qdrant's ``Modifier.IDF``), so
the dot product is BM25. This is the scheme of Qdrant's own ``Qdrant/bm25`` model; computing it
here instead of in the engine keeps one code path for local mode (which has no server-side
inference) and a server. ``avg_len`` is a fixed estimate rather than the corpus's running mean:
a mean would change every document's weights whenever any document is added.

Terms: lowercased, ASCII-folded words, English stopwords dropped (Lucene's 33, as Elasticsearch's english analyzer), Snowball-stemmed (the same
choices as the Qdrant Edge text index), hashed to 31-bit ids with CRC-32 (collisions are rare
and cost a little precision, never a crash).

Example:
    >>> from ragtune.index.sparse import Bm25Encoder
    >>> enc = Bm25Encoder()
    >>> enc.terms("The cats were running!")
    ['cat', 'were', 'run']
    >>> doc = enc.document("cats purr and cats sleep")
    >>> len(doc.indices), round(max(doc.values), 3)
    (3, 1.884)
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from collections import Counter
from dataclasses import dataclass
from functools import cached_property

_WORD = re.compile(r"\w+")


@dataclass
class SparseVector:
    indices: list[int]
    values: list[float]


@dataclass
class Bm25Encoder:
    k1: float = 1.2
    b: float = 0.75
    avg_len: float = 100.0  # terms per chunk after stopwords (200-token chunks: ~100 measured on SciFact)
    language: str = "english"

    @cached_property
    def _stemmer(self):
        import Stemmer

        return Stemmer.Stemmer(self.language)

    @cached_property
    def _stopwords(self) -> frozenset[str]:
        from bm25s.stopwords import STOPWORDS_EN

        return frozenset(STOPWORDS_EN) if self.language == "english" else frozenset()

    def terms(self, text: str) -> list[str]:
        folded = unicodedata.normalize("NFKD", text.lower()).encode("ascii", "ignore").decode()
        words = [w for w in _WORD.findall(folded) if w not in self._stopwords]
        return self._stemmer.stemWords(words)

    @staticmethod
    def term_id(term: str) -> int:
        return zlib.crc32(term.encode()) & 0x7FFFFFFF

    def document(self, text: str) -> SparseVector:
        terms = self.terms(text)
        norm = self.k1 * (1 - self.b + self.b * len(terms) / self.avg_len)
        weights: dict[int, float] = {}
        for term, tf in Counter(terms).items():
            tid = self.term_id(term)
            weights[tid] = weights.get(tid, 0.0) + tf * (self.k1 + 1) / (tf + norm)
        return SparseVector(list(weights), list(weights.values()))

    def query(self, text: str) -> SparseVector:
        ids = sorted({self.term_id(t) for t in self.terms(text)})
        return SparseVector(ids, [1.0] * len(ids))
