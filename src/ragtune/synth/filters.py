"""Quality filters for synthetic queries, each counting what it removed.

In order: *malformed* (by the query's kind: empty, not a question / a question posing as a claim /
more than 6 keywords, too short or long, or a sentence copied from the passage), *duplicate* (the same normalised question seen before), *round trip* (keep a question
only if its source chunk ranks in the top-k for it under BM25 or the current embedder, the
consistency check of InPars/Promptagator: a question its own passage does not answer well is
noise). Survivors are split by *document* into ``train`` and a held-out ``dev`` (never two
chunks of one document on both sides), written as ``qrels/train.tsv`` and ``qrels/dev.tsv``.

Example:
    >>> from ragtune.synth.filters import malformed
    >>> malformed("What limits the growth of tumour cells in hypoxia?", passage="...")
    >>> malformed("Tumour cells grow.", passage="Tumour cells grow.")
    'not a question'
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from ragtune.collection import Collection
from ragtune.data import beir
from ragtune.data.text import normalize_answer
from ragtune.errors import MissingInputError
from ragtune.retrieve import Searcher
from ragtune.synth.query_types import QUERY_TYPES
from ragtune.synth.query_types import question_malformed as malformed  # noqa: F401  (the question rule, as before)
from ragtune.types import ServicePrincipal


@dataclass
class FilterConfig:
    min_words: int = 4
    max_words: int = 40
    round_trip_k: int = 10
    round_trip_modes: tuple[str, ...] = ("bm25", "dense")  # kept if the chunk is in the top-k of any
    dev_fraction: float = 0.15  # documents held out for evaluating a trained model


@dataclass
class FilterReport:
    candidates: int = 0
    removed: dict[str, int] = field(default_factory=lambda: {"malformed": 0, "duplicate": 0, "round_trip": 0})
    malformed_reasons: dict[str, int] = field(default_factory=dict)
    kept: int = 0
    train: int = 0
    dev: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def is_dev(doc_id: str, fraction: float) -> bool:
    """Stable by-document split: the same document always lands on the same side."""
    h = int(hashlib.sha1(doc_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return h < fraction


def filter_queries(collection: Collection, folder: str | Path, config: FilterConfig | None = None,
                   on_progress: Callable[[str, int, int], None] | None = None) -> FilterReport:
    config = config or FilterConfig()
    folder = Path(folder)
    if not (folder / "queries.jsonl").exists():
        raise MissingInputError(f"{folder}: no queries.jsonl; generate questions first (`ragtune synth queries`)")
    corpus = beir.read_corpus(folder)
    candidates = beir.read_queries(folder)
    report = FilterReport(candidates=len(candidates))
    seen: set[str] = set()
    survivors = []
    for q in candidates:
        chunk = corpus.get(q["metadata"]["chunk_id"])
        kind = q["metadata"].get("type", "question")  # folders written before query types held questions only
        passage = chunk["text"] if chunk else ""
        reason = QUERY_TYPES[kind].malformed(q["text"], passage, config.min_words, config.max_words) \
            if kind in QUERY_TYPES else f"unknown query type {kind!r}"
        if not reason and q["metadata"].get("copies_example"):  # marked at generation (ragtune.synth.style)
            reason = "copies an example query"
        if reason:
            report.removed["malformed"] += 1
            report.malformed_reasons[reason] = report.malformed_reasons.get(reason, 0) + 1
            continue
        key = normalize_answer(q["text"])
        if key in seen:
            report.removed["duplicate"] += 1
            continue
        seen.add(key)
        survivors.append(q)
    searcher = Searcher(collection)
    principal = ServicePrincipal(acl=tuple(collection.acl_tokens()))
    kept = []
    for n, q in enumerate(survivors, start=1):
        target = q["metadata"]["chunk_id"]
        # No modes: no round trip (probe sets: a set chosen by the live retrievers would favour them).
        if not config.round_trip_modes or any(
                target in {h.chunk_id for h in searcher.search(q["text"], principal, mode=mode, k=config.round_trip_k,
                                                               with_ranks=False)}
                for mode in config.round_trip_modes):
            kept.append(q)
        else:
            report.removed["round_trip"] += 1
        if on_progress:
            on_progress("round trip", n, len(survivors))
    report.kept = len(kept)
    sides: dict[str, list[tuple[str, str, int]]] = {"train": [], "dev": []}
    for q in kept:
        side = "dev" if is_dev(q["metadata"]["doc_id"], config.dev_fraction) else "train"
        sides[side].append((q["_id"], q["metadata"]["chunk_id"], 1))
    report.train = beir.write_qrels(folder, "train", sides["train"])
    report.dev = beir.write_qrels(folder, "dev", sides["dev"])
    (folder / "filter_report.json").write_text(json.dumps(report.to_dict(), indent=2))
    return report
