"""Plan an adaptation run to a time budget (`ragtune adapt --budget-minutes N`).

A new user's first run is usually sized by hand (`--max-chunks 500`) and ends with a few hundred
kept questions and a handful of optimiser steps. Given minutes instead, the loop measures its own
speeds on this machine and this collection, then buys as much training signal as fits:

- fixed costs first: re-indexing every chunk with the trained embedder (the shadow index) and
  the held-out comparison;
- then synthetic queries, each costing its writing, its round-trip check and, for the share that
  survives the filters, its training (and teacher scoring / reranker training when asked for);
- distinct chunks before several queries per chunk: a new chunk adds a new positive passage and
  new hard negatives, a second query for the same chunk mostly a paraphrase.

Speeds are measured, not assumed: the writer on one batch of the collection's own chunks (the
questions it writes are kept, in the run's folder), the embedder on a sample of them. Training
cost per row follows from the encoder speed by the usual rule that a forward + backward pass
costs about three forward passes. The plan says what it measured and what it bought, and the
run's report records how long each step actually took.

Example:
    >>> from ragtune.budget import Speeds, plan_budget
    >>> p = plan_budget(30 * 60, eligible_chunks=5000, total_chunks=6000,
    ...                 speeds=Speeds(query_s=1.0, encode_per_s=40.0, search_s=0.02))
    >>> p.chunks, p.per_chunk, p.queries
    (1322, 1, 1322)
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ragtune.errors import InputError

# Share of written queries that pass the kind rules and the round trip (SciFact, prompted
# SmolLM2-135M after query repair: 151 of 400); a run with its own filter report uses its own.
KEEP_RATE = 0.38
DEV_FRACTION = 0.2  # held out by document for the comparison (synth.filters' default split)
MAX_PER_CHUNK = 4
SAFETY = 0.9  # plan to 90% of the budget: the estimates are estimates


@dataclass(frozen=True)
class Speeds:
    query_s: float  # writer: seconds per synthetic query, batched as the run batches
    encode_per_s: float  # embedder: passages per second (indexing and, x1/3, training)
    search_s: float  # one search through the pipeline (round trip, mining, evaluation)


@dataclass
class BudgetPlan:
    budget_s: float
    eligible_chunks: int
    chunks: int  # chunks that get queries
    per_chunk: int
    queries: int
    expected_rows: int  # training rows expected after the filters
    seconds: dict[str, float] = field(default_factory=dict)  # estimated per stage
    speeds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        s = self.seconds
        return (f"budget {self.budget_s / 60:.0f} min: writer {self.speeds['query_s']:.2f} s/query, embedder "
                f"{self.speeds['encode_per_s']:.0f} passages/s → {self.queries} queries ({self.per_chunk} per chunk "
                f"over {self.chunks} of {self.eligible_chunks} chunks), ~{self.expected_rows} training rows; "
                f"estimated: writing {s['queries'] / 60:.1f} min, filter + mining {s['checks'] / 60:.1f} min, "
                f"training {s['training'] / 60:.1f} min, re-index {s['reindex'] / 60:.1f} min, "
                f"comparison {s['evaluate'] / 60:.1f} min")


def plan_budget(budget_s: float, eligible_chunks: int, total_chunks: int, speeds: Speeds,
                keep_rate: float = KEEP_RATE, epochs: float = 1.0, negatives: int = 1,
                teacher: bool = False, reranker: bool = False, max_per_chunk: int = MAX_PER_CHUNK,
                probes: int = 0) -> BudgetPlan:
    """How many queries, over how many chunks, fit ``budget_s`` seconds.

    Raises :class:`InputError` when the budget does not even cover the fixed costs, naming the
    smallest budget that buys a useful run (100 training rows)."""
    if eligible_chunks <= 0:
        raise InputError("no chunk is long enough to write a query from; ingest documents first")
    train_pass = 3.0 / speeds.encode_per_s  # forward + backward ≈ 3 forwards, per passage
    per_row = epochs * (2 + negatives) * train_pass  # query, positive, negatives
    if teacher:
        per_row += (1 + 3) / speeds.encode_per_s  # the teacher scores the positive and 3 candidates
    if reranker:
        per_row += epochs * (1 + 3) * train_pass
    # Per written query: the writing, the round-trip search and the mining search, and its share
    # of training (only kept, non-dev queries train) and of the comparison (kept dev queries,
    # searched on both versions).
    per_query = (speeds.query_s + 2 * speeds.search_s + keep_rate * (1 - DEV_FRACTION) * per_row
                 + keep_rate * DEV_FRACTION * 2 * speeds.search_s)
    reindex = total_chunks / speeds.encode_per_s
    # The gate's probes: written, then searched on both versions (a fixed cost like the re-index).
    probes_s = probes * (speeds.query_s + 2 * speeds.search_s)
    available = budget_s * SAFETY - reindex - probes_s
    # Written queries for 100 training rows, or all a small collection can give.
    useful = min(100 / (keep_rate * (1 - DEV_FRACTION)), eligible_chunks * max_per_chunk)
    if available < useful * per_query:
        need = (reindex + probes_s + useful * per_query) / SAFETY
        raise InputError(f"--budget-minutes {budget_s / 60:g} does not cover re-indexing {total_chunks} chunks "
                         f"({reindex / 60:.1f} min at {speeds.encode_per_s:.0f} passages/s), {probes} gate probes "
                         f"({probes_s / 60:.1f} min) and the ~{useful:.0f} queries of a useful run; "
                         f"give at least {math.ceil(need / 60)} minutes")
    queries = int(available / per_query)
    per_chunk = max(1, min(max_per_chunk, queries // eligible_chunks))
    chunks = min(eligible_chunks, queries // per_chunk)
    queries = chunks * per_chunk
    kept = queries * keep_rate
    return BudgetPlan(
        budget_s, eligible_chunks, chunks, per_chunk, queries, int(kept * (1 - DEV_FRACTION)),
        seconds={"queries": queries * speeds.query_s, "checks": queries * 2 * speeds.search_s,
                 "training": kept * (1 - DEV_FRACTION) * per_row, "reindex": reindex,
                 "evaluate": kept * DEV_FRACTION * 2 * speeds.search_s + probes_s},
        speeds=asdict(speeds))


def measure_speeds(collection, generator, folder: Path, queries_config, sample: int = 64) -> Speeds:
    """This machine's speeds on this collection: the writer on one batch of its chunks (written
    into ``folder``, the run's own synthetic folder, so the probe's queries are kept), the
    embedder on ``sample`` chunks, one search per sampled chunk text."""
    from dataclasses import replace

    from ragtune.retrieve import Searcher
    from ragtune.synth.queries import batch_size_for, generate_queries, select_chunks
    from ragtune.types import ServicePrincipal

    chunks = select_chunks(collection.chunks(), queries_config)
    if not chunks:
        raise InputError("no chunk is long enough to write a query from; ingest documents first")
    batch = batch_size_for(generator, queries_config.batch_size)
    probe = replace(queries_config, max_chunks=min(batch, len(chunks)), per_chunk=1)
    start = time.perf_counter()
    written = generate_queries(collection, generator, folder, probe)
    query_s = (time.perf_counter() - start) / max(1, written)
    texts = [c["text"] for c in chunks[:sample]]
    start = time.perf_counter()
    collection.embedder.embed_documents(texts)
    encode_per_s = len(texts) / (time.perf_counter() - start)
    searcher = Searcher(collection)
    principal = ServicePrincipal(acl=tuple(collection.acl_tokens()))
    start = time.perf_counter()
    for text in texts[:16]:
        searcher.search(" ".join(text.split()[:24]), principal, k=10)
    search_s = (time.perf_counter() - start) / len(texts[:16])
    return Speeds(query_s, encode_per_s, search_s)
