"""Token-aware recursive chunking with small-to-big parents.

A document is cut into *sections* at Markdown headings (loaders turn HTML/DOCX headings into
``#`` lines). A section longer than ``chunk_size`` tokens is split on paragraphs, then lines,
then sentences, then words, then tokens, and the pieces are merged greedily back up to
``chunk_size`` with ``chunk_overlap`` tokens shared between neighbours. Every chunk is a span of
the source: ``chunk.text == doc.text[chunk.start:chunk.end]``.

Tokens are counted with the embedding model's own tokenizer, once per document: the offsets of
all tokens are computed up front and a span's token count is a bisection, so splitting costs no
extra tokenizer calls. Overlap is made of whole pieces (sentences, words...), so a neighbour
repeats at most ``chunk_overlap`` tokens and may repeat none when the last piece is longer. (This is why ragtune does not use a generic text splitter: those count
tokens by re-tokenizing every candidate piece.)

Small-to-big: each chunk also records a *parent* span (its section, cut at ``parent_size``
tokens) that always contains it; the chunk is what is searched, the parent is what the answer
step reads.

Example:
    >>> from ragtune.config import ChunkingConfig
    >>> from ragtune.ingest.chunking import Chunker
    >>> from ragtune.types import Document
    >>> words = lambda text: [m.start() for m in __import__("re").finditer(r"\\S+", text)]
    >>> chunker = Chunker(ChunkingConfig(chunk_size=8, chunk_overlap=2, parent_size=16), words)
    >>> doc = Document(id="d", text="# Intro\\n\\nOne two three. Four five six seven. Eight nine ten.")
    >>> [c.text for c in chunker.chunk(doc)]
    ['# Intro\\n\\nOne two three.', 'Four five six seven. Eight nine ten.']
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass
from typing import Callable, Sequence

from ragtune.config import ChunkingConfig
from ragtune.types import Chunk, Document

# Split levels, coarse to fine; the last level (tokens) is handled separately.
_SEPARATORS = [
    re.compile(r"\n[ \t]*\n\s*"),  # paragraphs
    re.compile(r"\n\s*"),  # lines
    re.compile(r"(?<=[.!?;:])[\"')\]]*\s+"),  # sentences
    re.compile(r"\s+"),  # words
]
_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$")
_FENCE = re.compile(r"^\s*(```|~~~)")

TokenStarts = Callable[[str], Sequence[int]]


@dataclass(frozen=True)
class Section:
    start: int
    end: int
    heading_path: tuple[str, ...]


def sections(text: str) -> list[Section]:
    """Cut ``text`` at Markdown headings (ignoring ``#`` lines inside code fences)."""
    out: list[Section] = []
    path: list[tuple[int, str]] = []
    current_start, current_path = 0, tuple[str, ...]()
    in_fence = False
    pos = 0
    for line in text.splitlines(keepends=True):
        if _FENCE.match(line):
            in_fence = not in_fence
        m = None if in_fence else _HEADING.match(line.rstrip("\r\n"))
        if m:
            if pos > current_start:
                out.append(Section(current_start, pos, current_path))
            level = len(m.group(1))
            path = [(lvl, h) for lvl, h in path if lvl < level] + [(level, m.group(2).strip())]
            current_start, current_path = pos, tuple(h for _, h in path)
        pos += len(line)
    if len(text) > current_start:
        out.append(Section(current_start, len(text), current_path))
    return out


class Chunker:
    """Cuts documents into token-bounded chunks; see the module docstring.

    ``token_starts(text)`` returns the character offset where each token of ``text`` starts:
    :meth:`from_tokenizer` builds it from a Hugging Face fast tokenizer.
    """

    def __init__(self, config: ChunkingConfig, token_starts: TokenStarts):
        self.config = config
        self._token_starts = token_starts

    @classmethod
    def from_tokenizer(cls, config: ChunkingConfig, tokenizer) -> "Chunker":
        def token_starts(text: str) -> list[int]:
            enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
            return [s for s, e in enc["offset_mapping"] if e > s]

        return cls(config, token_starts)

    def chunk(self, doc: Document) -> list[Chunk]:
        text = doc.text
        starts = list(self._token_starts(text))
        span = _Spans(text, starts, recount=lambda a, b: len(self._token_starts(text[a:b])))
        size, overlap, parent_size = (
            self.config.chunk_size,
            self.config.chunk_overlap,
            self.config.parent_size,
        )
        chunks: list[Chunk] = []
        for section in sections(text):
            parents = (
                span.pack(span.split(section.start, section.end, parent_size), parent_size, 0)
                if parent_size
                else []
            )
            parent_starts = [p[0] for p in parents]
            pieces = span.split(section.start, section.end, size)
            for s, e in span.pack(pieces, size, overlap):
                ps, pe = _parent_of(parents, parent_starts, s, e) if parents else (s, e)
                chunks.append(
                    Chunk(
                        doc_id=doc.id,
                        index=len(chunks),
                        text=text[s:e],
                        start=s,
                        end=e,
                        heading_path=section.heading_path,
                        parent_start=ps,
                        parent_end=pe,
                        n_tokens=span.count(s, e),
                    )
                )
        return chunks


class _Spans:
    """Token arithmetic over one text whose token start offsets are known."""

    def __init__(self, text: str, token_starts: list[int], recount: Callable[[int, int], int]):
        self.text = text
        self.starts = token_starts
        # Counting by offsets in the whole text is exact at whitespace boundaries, but a piece
        # cut inside a word may tokenize differently on its own: emitted spans are re-counted.
        self.recount = recount

    def count(self, s: int, e: int) -> int:
        return bisect_left(self.starts, e) - bisect_left(self.starts, s)

    def split(self, s: int, e: int, size: int, level: int = 0) -> list[tuple[int, int]]:
        """Contiguous pieces covering [s, e), each of at most ``size`` tokens."""
        if self.count(s, e) <= size:
            return [(s, e)]
        if level == len(_SEPARATORS):
            return self._token_windows(s, e, size)
        bounds = [s] + [m.end() for m in _SEPARATORS[level].finditer(self.text, s, e) if s < m.end() < e] + [e]
        if len(bounds) == 2:
            return self.split(s, e, size, level + 1)
        out: list[tuple[int, int]] = []
        for a, b in zip(bounds, bounds[1:]):
            out += self.split(a, b, size, level + 1)
        return out

    def _token_windows(self, s: int, e: int, size: int) -> list[tuple[int, int]]:
        lo, hi = bisect_left(self.starts, s), bisect_left(self.starts, e)
        cuts = [s] + [self.starts[i] for i in range(lo + size, hi, size)] + [e]
        return list(zip(cuts, cuts[1:]))

    def pack(self, pieces: list[tuple[int, int]], size: int, overlap: int) -> list[tuple[int, int]]:
        """Greedily merge contiguous pieces up to ``size`` tokens, repeating up to ``overlap``
        tokens of trailing pieces at the start of the next chunk; returns whitespace-trimmed spans."""
        out: list[tuple[int, int]] = []
        cur: list[tuple[int, int]] = []
        for piece in pieces:
            if cur and self.count(cur[0][0], piece[1]) > size:
                out.append((cur[0][0], cur[-1][1]))
                keep: list[tuple[int, int]] = []
                for prev in reversed(cur):
                    if self.count(prev[0], cur[-1][1]) > overlap:
                        break
                    keep.insert(0, prev)
                cur = keep if keep and self.count(keep[0][0], piece[1]) <= size else []
            cur.append(piece)
        if cur:
            out.append((cur[0][0], cur[-1][1]))
        trimmed = [self._trim(s, e) for s, e in out]
        return [piece for s, e in trimmed if e > s for piece in self._fit(s, e, size)]

    def _fit(self, s: int, e: int, size: int) -> list[tuple[int, int]]:
        """Split (s, e) at token starts until each part re-tokenizes to at most ``size`` tokens."""
        if self.recount(s, e) <= size:
            return [(s, e)]
        lo, hi = bisect_left(self.starts, s), bisect_left(self.starts, e)
        cuts = self.starts[lo + 1:hi]
        if not cuts:  # a single token: nothing smaller to cut to
            return [(s, e)]
        mid = cuts[len(cuts) // 2]
        return [p for a, b in ((s, mid), (mid, e)) for p in self._fit(*self._trim(a, b), size) if p[1] > p[0]]

    def _trim(self, s: int, e: int) -> tuple[int, int]:
        while s < e and self.text[s].isspace():
            s += 1
        while e > s and self.text[e - 1].isspace():
            e -= 1
        return s, e


def _parent_of(parents: list[tuple[int, int]], starts: list[int], s: int, e: int) -> tuple[int, int]:
    """The parent overlapping the chunk most, widened so that it always contains the chunk.

    Parents are sorted and do not overlap, so only those starting before ``e`` back to the first
    that ends by ``s`` can touch the chunk: a bisect, not a scan of every parent (which made a
    long heading-less text quadratic).

    >>> _parent_of([(0, 10), (10, 20), (20, 30)], [0, 10, 20], 12, 24)
    (10, 24)
    """
    i = max(bisect_left(starts, e) - 1, 0)
    best = parents[i]
    while i > 0 and parents[i - 1][1] > s:
        i -= 1
        if min(parents[i][1], e) - max(parents[i][0], s) >= min(best[1], e) - max(best[0], s):  # ties: the first, as max() did
            best = parents[i]
    return min(best[0], s), max(best[1], e)
