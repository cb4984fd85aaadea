"""Chunker properties with the embedding model's real tokenizer."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ragtune.config import ChunkingConfig
from ragtune.ingest.chunking import Chunker, sections
from ragtune.types import Document


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from ragtune.models.loading import resolve_model

    return AutoTokenizer.from_pretrained(resolve_model("all-MiniLM-L6-v2"))


def n_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


words = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=1, max_size=18)
sentence = st.lists(words, min_size=1, max_size=25).map(lambda ws: " ".join(ws) + ".")
paragraph = st.lists(sentence, min_size=1, max_size=8).map(" ".join)
heading = st.tuples(st.integers(1, 3), words).map(lambda t: "#" * t[0] + " " + t[1])
block = st.one_of(paragraph, heading, words.map(lambda w: w * 30))  # the last: one huge "word"
documents = st.lists(block, min_size=1, max_size=12).map("\n\n".join)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=documents, size=st.integers(16, 120), overlap_frac=st.floats(0, 0.5), parent=st.sampled_from([0, 1, 3]))
def test_chunks_are_exact_spans_within_size(tokenizer, text, size, overlap_frac, parent):
    cfg = ChunkingConfig(chunk_size=size, chunk_overlap=int(size * overlap_frac), parent_size=size * parent)
    chunks = Chunker.from_tokenizer(cfg, tokenizer).chunk(Document(id="d", text=text))
    assert chunks, "a non-empty document yields chunks"
    covered = set()
    for i, c in enumerate(chunks):
        assert c.index == i and c.doc_id == "d"
        assert c.text == text[c.start:c.end]  # offsets map back to the source
        assert c.text == c.text.strip() and c.text
        assert n_tokens(tokenizer, c.text) <= size  # within bounds, re-counted independently
        assert c.parent_start <= c.start and c.end <= c.parent_end  # the parent contains the chunk
        covered.update(range(c.start, c.end))
    # Nothing but whitespace is ever left out.
    assert all(text[i].isspace() for i in range(len(text)) if i not in covered)


def test_heading_paths_and_parents(tokenizer):
    text = (
        "# Handbook\n\nWelcome.\n\n## Leave\n\nYou get 25 days of leave per year. Ask your manager first.\n\n"
        "### Sick leave\n\nCall in before 9am.\n\n## Travel\n\nTrains for trips under four hours."
    )
    cfg = ChunkingConfig(chunk_size=12, chunk_overlap=0, parent_size=64)
    chunks = Chunker.from_tokenizer(cfg, tokenizer).chunk(Document(id="h", text=text))
    paths = [c.heading_path for c in chunks]
    assert ("Handbook", "Leave", "Sick leave") in paths
    assert ("Handbook", "Travel") in paths
    leave = [c for c in chunks if c.heading_path == ("Handbook", "Leave")]
    assert len(leave) >= 2, "the Leave section is longer than one 12-token chunk"
    # Small-to-big: every Leave chunk has the whole Leave section as its parent.
    section = text[text.index("## Leave"):text.index("### Sick")].strip()
    assert all(text[c.parent_start:c.parent_end].strip() == section for c in leave)


def test_overlap_repeats_trailing_text(tokenizer):
    text = " ".join(f"Sentence number {i} is here." for i in range(40))
    cfg = ChunkingConfig(chunk_size=30, chunk_overlap=12, parent_size=0)
    chunks = Chunker.from_tokenizer(cfg, tokenizer).chunk(Document(id="o", text=text))
    assert len(chunks) > 3
    assert all(b.start < a.end for a, b in zip(chunks, chunks[1:])), "neighbours share text"


def test_code_fence_hashes_are_not_headings():
    text = "# Real\n\n```bash\n# not a heading\nls\n```\n\n## Also real\n\nx"
    assert [s.heading_path for s in sections(text)] == [("Real",), ("Real", "Also real")]


def test_bad_chunking_config_names_the_field():
    with pytest.raises(ValueError, match="chunk_overlap .* must be smaller than chunk_size"):
        ChunkingConfig(chunk_size=32, chunk_overlap=32)


@given(st.lists(st.integers(1, 40), min_size=1, max_size=30), st.integers(0, 600), st.integers(1, 80))
def test_parent_lookup_matches_the_full_scan(lengths, s, width):
    from ragtune.ingest.chunking import _parent_of

    parents, start = [], 0
    for n in lengths:
        parents.append((start, start + n))
        start += n
    e = s + width
    best = max(parents, key=lambda p: min(p[1], e) - max(p[0], s))  # the definition: most overlap, first on ties
    assert _parent_of(parents, [p[0] for p in parents], s, e) == (min(best[0], s), max(best[1], e))


def test_chunking_a_long_headingless_text_scales_linearly():
    """Every chunk used to scan every parent of its section: hours for one large file."""
    import random
    import re
    import time

    config = ChunkingConfig(chunk_size=16, chunk_overlap=0, parent_size=64)  # many chunks and parents
    chunker = Chunker(config, lambda t: [m.start() for m in re.finditer(r"\S+", t)])
    rng = random.Random(0)

    def seconds(n_words: int) -> float:
        text = " ".join(rng.choice(["alpha", "beta.", "gamma", "delta"]) for _ in range(n_words))
        return min(_timed(time, chunker, text) for _ in range(2))

    small, large = seconds(50_000), seconds(200_000)
    assert large / small < 8, (small, large)  # 4x the text: ~4x the time, not ~16x


def _timed(time, chunker, text) -> float:
    started = time.perf_counter()
    chunker.chunk(Document(id="x", text=text, source="x"))
    return time.perf_counter() - started
