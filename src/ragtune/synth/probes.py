"""Gate probes: held-out queries the training did not shape.

The adaptation loop's own dev questions share everything with its training questions but the
documents: the writer, the prompt, the kinds, the chunk → query habit. A candidate that learned
those habits looks better there and nowhere else (issue 25). Probes differ on purpose:

- written for chunks of the *dev documents* (never trained on), those that got no synthetic
  question first (with fewer dev chunks than probes asked for, a probe of each kind per chunk);
- of the kinds the training set does not hold (train on questions → probe with claims and
  keyword queries); when training holds every kind, of every kind;
- asked for in other words than the passage's (``QueryGenConfig.own_words``), so a probe does not
  reward copying the chunk's wording;
- filtered for form only (malformed, duplicates): the round-trip filter keeps what the *live*
  retrievers find, and a probe set chosen by the live model would favour it.

The folder is BEIR (``probes/queries.jsonl``, ``qrels/dev.tsv`` naming each probe's source chunk),
judged by a teacher over both versions' results at gate time (:func:`ragtune.gate.compare_judged`).

Example:
    >>> from ragtune.synth.probes import probe_kinds
    >>> probe_kinds(("question",)), probe_kinds(("question", "claim", "keywords"))
    (('claim', 'keywords'), ('question', 'claim', 'keywords'))
"""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path
from typing import Callable

from ragtune.collection import Collection
from ragtune.data import beir
from ragtune.models.generator import Generator
from ragtune.synth.filters import FilterConfig, filter_queries, is_dev
from ragtune.synth.queries import DEFAULT_TYPES, QueryGenConfig, generate_queries


def probe_kinds(training: tuple[str, ...]) -> tuple[str, ...]:
    """The kinds the training set does not hold; all kinds when it holds every one."""
    return tuple(k for k in DEFAULT_TYPES if k not in training) or DEFAULT_TYPES


def probe_chunks(collection: Collection, synth_folder: Path, dev_fraction: float, count: int,
                 min_words: int = 20, seed: int = 0) -> set[str]:
    """Up to ``count`` chunks of held-out (dev) documents, those no synthetic query was written
    for first (other targets than the writer's), then the rest of the dev chunks."""
    used = {q["metadata"]["chunk_id"] for q in beir.read_queries(synth_folder)} \
        if (synth_folder / "queries.jsonl").exists() else set()
    dev = sorted(c["chunk_id"] for c in collection.chunks()
                 if is_dev(c["doc_id"], dev_fraction) and len(c.get("text", "").split()) >= min_words)
    rng = random.Random(seed)
    fresh, seen = [c for c in dev if c not in used], [c for c in dev if c in used]
    chosen = rng.sample(fresh, min(count, len(fresh)))
    return set(chosen + rng.sample(seen, min(count - len(chosen), len(seen))))


def probes_per_chunk(count: int, chunks: int, kinds: int) -> int:
    """One probe per chunk while the dev documents have ``count`` chunks; a small collection's few
    dev chunks get one probe of each kind instead (a gate needs ~20 probes to decide at all).

    >>> probes_per_chunk(200, 500, 2), probes_per_chunk(200, 46, 2), probes_per_chunk(200, 0, 2)
    (1, 2, 1)
    """
    return max(1, min(kinds, -(-count // chunks))) if chunks else 1


def write_probes(collection: Collection, generator: Generator, synth_folder: str | Path, queries: QueryGenConfig,
                 filters: FilterConfig, count: int = 60,
                 on_progress: Callable[[str, int, int], None] | None = None) -> dict:
    """Write up to ``count`` probes into ``<synth_folder>/probes`` (resumable: generation goes chunk by chunk)."""
    synth_folder = Path(synth_folder)
    folder = synth_folder / "probes"
    chunks = probe_chunks(collection, synth_folder, filters.dev_fraction, count, queries.min_chunk_words, queries.seed)
    kinds = probe_kinds(queries.type_cycle())
    per_chunk = probes_per_chunk(count, len(chunks), len(kinds))
    config = replace(queries, types=kinds, examples=(), per_chunk=per_chunk, max_chunks=None, own_words=True)
    generate_queries(collection, generator, folder, config, on_progress, chunk_ids=chunks)
    report = filter_queries(collection, folder, replace(filters, round_trip_modes=(), dev_fraction=1.0))
    return {"folder": str(folder), "writer": generator.name, "kinds": list(kinds), "chunks": len(chunks),
            "written": report.candidates, "kept": report.dev, "removed": report.removed}
