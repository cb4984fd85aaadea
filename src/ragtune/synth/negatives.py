"""Hard negatives for (question, chunk) pairs, mined from the collection's own index.

Candidates are the top chunks under the current embedder *and* BM25 (one store query each, so
no second copy of the corpus is embedded: sentence-transformers' ``mine_hard_negatives`` would
re-encode everything the index already holds). Each candidate is scored with the current
embedder against the question, and false negatives are kept out two ways:

- *margin*: a negative must score below ``(1 - relative_margin)`` times the positive's score
  (the rule of ``mine_hard_negatives``): a near-duplicate of the positive is likely relevant too;
- *same document*: chunks of the positive's own document overlap it or continue it.

The hardest survivors are kept. Output ``negatives.<split>.jsonl``:
``{"query_id", "query", "positive", "negatives": [chunk ids], "scores": {...}}``.

Example:
    >>> from ragtune.synth.negatives import MiningConfig, mine_negatives
    >>> stats = mine_negatives(collection, "synth/run1", "train", MiningConfig(num_negatives=3))  # doctest: +SKIP
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ragtune.collection import Collection
from ragtune.data.beir import load_beir, read_corpus
from ragtune.index.base import Mode, Query


@dataclass
class MiningConfig:
    num_negatives: int = 3
    depth: int = 30  # candidates per retriever
    relative_margin: float = 0.05
    modes: tuple[Mode, ...] = ("dense", "bm25")
    skip_same_document: bool = True


def mine_negatives(collection: Collection, folder: str | Path, split: str = "train", config: MiningConfig | None = None,
                   on_progress: Callable[[str, int, int], None] | None = None) -> dict:
    config = config or MiningConfig()
    folder = Path(folder)
    ds = load_beir(folder, split)
    meta = {doc_id: r.get("metadata", {}) for doc_id, r in read_corpus(folder).items()}
    tokens = collection.acl_tokens()
    embedder, store = collection.embedder, collection.store
    stats = {"queries": 0, "with_negatives": 0, "negatives": 0, "dropped_margin": 0, "dropped_same_document": 0}
    out_path = folder / f"negatives.{split}.jsonl"
    with out_path.open("w") as out:
        for n, (qid, text) in enumerate(sorted(ds.queries.items()), start=1):
            positive = next(iter(ds.qrels[qid]))
            q = embedder.embed_query(text)
            candidates: dict[str, str] = {}  # chunk id -> point id
            for mode in config.modes:
                query = Query(mode=mode, acl_tokens=tokens, k=config.depth, vector=q if mode == "dense" else None,
                              text=text if mode == "bm25" else None, with_ranks=False,
                              hnsw_ef=collection.pipeline.query.hnsw_ef)
                for h in store.search(query):
                    candidates.setdefault(h.payload["chunk_id"], h.point_id)
            candidates.pop(positive, None)
            pos_doc = meta[positive]["doc_id"]
            ids = list(candidates)
            vectors = store.vectors([candidates[c] for c in ids] + [meta[positive]["point_id"]])
            scores = vectors @ q
            pos_score = float(scores[-1])
            kept = []
            for i in np.argsort(-scores[:-1]):
                cid = ids[i]
                if config.skip_same_document and _doc_of(cid, meta) == pos_doc:
                    stats["dropped_same_document"] += 1
                    continue
                if scores[i] >= pos_score * (1 - config.relative_margin):
                    stats["dropped_margin"] += 1
                    continue
                kept.append((cid, float(scores[i])))
                if len(kept) == config.num_negatives:
                    break
            out.write(json.dumps({"query_id": qid, "query": text, "positive": positive, "positive_score": pos_score,
                                  "negatives": [c for c, _ in kept], "scores": dict(kept)}) + "\n")
            stats["queries"] += 1
            stats["with_negatives"] += bool(kept)
            stats["negatives"] += len(kept)
            if on_progress:
                on_progress("mining", n, len(ds.queries))
    (folder / f"negatives.{split}.stats.json").write_text(json.dumps(stats, indent=2))
    return stats


def _doc_of(chunk_id: str, meta: dict) -> str:
    # A chunk indexed after the corpus file was written still belongs to a document: chunk ids
    # are "<doc id>#<n>", which is how the chunker names them.
    if chunk_id in meta:
        return meta[chunk_id]["doc_id"]
    return chunk_id.rsplit("#", 1)[0]


def _texts(folder: Path) -> dict[str, str]:
    return {doc_id: r["text"] for doc_id, r in read_corpus(folder).items()}


def training_rows(folder: str | Path, split: str = "train", num_negatives: int = 1,
                  ragged: bool = False) -> list[dict[str, str]]:
    """(anchor, positive, negative_1..n) text rows for the trainers.

    Embedder datasets need the same columns in every row, so by default a question without
    ``num_negatives`` negatives is left out (in-batch negatives still apply to the rest); with
    ``ragged`` each row gets up to ``num_negatives`` and rows with none are left out (reranker
    pairs). Without a negatives file: (anchor, positive) rows from the qrels."""
    folder = Path(folder)
    corpus = _texts(folder)
    path = folder / f"negatives.{split}.jsonl"
    if not path.exists() or num_negatives == 0:
        ds = load_beir(folder, split)
        return [{"anchor": text, "positive": corpus[next(iter(ds.qrels[qid]))]} for qid, text in sorted(ds.queries.items())]
    rows = []
    for line in path.read_text().splitlines():
        r = json.loads(line)
        negs = [n for n in r["negatives"] if n in corpus][:num_negatives]
        if (ragged and not negs) or (not ragged and len(negs) < num_negatives):
            continue
        row = {"anchor": r["query"], "positive": corpus[r["positive"]]}
        row.update({f"negative_{i}": corpus[n] for i, n in enumerate(negs, start=1)})
        rows.append(row)
    return rows
