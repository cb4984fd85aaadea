"""Teacher scores for distilling into the embedder (GPL's recipe, and listwise distillation).

For every synthetic question with mined negatives (``negatives.<split>.jsonl``) a teacher scores
the question against its positive and each negative; the embedder then learns to reproduce the
teacher's margins (``MarginMSELoss``) or its distribution over the candidates
(``DistillKLDivLoss``) instead of treating every mined negative as certainly wrong — which is why
plain contrastive training on synthetic questions often lowers quality (a mined "negative" may
well answer the question).

Teachers:

- ``cross-encoder``: a trained reranker (``ragtune train reranker``), raw logits;
- ``hybrid``: the pipeline's own fusion, ``Σ 1 / (rrf_k + rank)`` of the candidate in the full-corpus
  dense (current embedder) and BM25 orderings (top ``query.candidates`` of each, as the store
  fuses), times ``rrf_k`` (first in both ≈ 2, first in one ≈ 1): free, and better than either
  retriever alone. Its scores sit close together near the top: distil it with a sharp KL
  teacher temperature (e.g. 0.05) rather than raw margins.

Output ``teacher.<name>.<split>.jsonl``: ``{"query_id", "query", "positive", "negatives", "scores"}``
(scores: positive first), appended question by question, so a stopped run resumes.

Example:
    >>> from ragtune.synth.teacher import score_with_teacher
    >>> n = score_with_teacher(collection, "synth/default", "hybrid")  # doctest: +SKIP
    >>> rows = distillation_rows("synth/default", "hybrid", num_negatives=3)  # doctest: +SKIP
    >>> rows[0]["label"]  # doctest: +SKIP
    [1.93, 0.61, 0.05, 0.33]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np

from ragtune.collection import Collection
from ragtune.data.beir import iter_jsonl, read_corpus
from ragtune.errors import InputError, MissingInputError

Scorer = Callable[[str, list[str]], list[float]]  # (query, candidate chunk ids) -> scores


def teacher_path(folder: Path, teacher: str, split: str) -> Path:
    return folder / f"teacher.{teacher}.{split}.jsonl"


def cross_encoder_scorer(model_path: str, texts: dict[str, str], device: str | None = None,
                         batch_size: int = 64) -> Scorer:
    import torch

    from ragtune.models.loading import cross_encoder

    model = cross_encoder(model_path, device)

    def score(query: str, candidates: list[str]) -> list[float]:
        logits = model.predict([(query, texts[c]) for c in candidates], batch_size=batch_size,
                               activation_fn=torch.nn.Identity(), show_progress_bar=False)
        return [float(x) for x in logits]

    return score


def hybrid_scorer(collection: Collection, texts: dict[str, str], rrf_k: int = 60, depth: int = 100) -> Scorer:
    """RRF of the candidate's full-corpus ranks under dense cosine and BM25 (bm25s over the set's
    corpus), scaled by ``rrf_k`` — as the store fuses: a retriever contributes only where the
    candidate is in its top ``depth`` (the prefetch) and, for BM25, shares a term with the query."""
    import bm25s

    ids = list(texts)
    point_of = {c["chunk_id"]: c["point_id"] for c in collection.chunks()}
    missing = [i for i in ids if i not in point_of]
    if missing:
        raise InputError(f"{len(missing)} chunks of the synthetic set are no longer in {collection.name!r} "
                         f"(e.g. {missing[0]}); regenerate the set")
    vectors = collection.store.vectors([point_of[i] for i in ids])
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize([texts[i] for i in ids], stopwords="en", show_progress=False), show_progress=False)
    index_of = {c: n for n, c in enumerate(ids)}
    embedder = collection.embedder

    def ranks_of(scores: np.ndarray) -> np.ndarray:
        order = np.argsort(-scores, kind="stable")
        ranks = np.empty(len(scores), dtype=np.int64)
        ranks[order] = np.arange(1, len(scores) + 1)
        return ranks

    def contribution(ranks: np.ndarray, row: int, matched: bool = True) -> float:
        return 1 / (rrf_k + ranks[row]) if matched and ranks[row] <= depth else 0.0

    def score(query: str, candidates: list[str]) -> list[float]:
        dense = ranks_of(vectors @ embedder.embed_query(query))
        tokens = bm25s.tokenize([query], stopwords="en", show_progress=False, return_ids=False)[0]
        bm25_scores = np.asarray(retriever.get_scores(tokens))
        bm25 = ranks_of(bm25_scores)
        rows = [index_of[c] for c in candidates]
        return [float(rrf_k * (contribution(dense, r) + contribution(bm25, r, bm25_scores[r] > 0))) for r in rows]

    return score


def score_with_teacher(collection: Collection, folder: str | Path, teacher: str, split: str = "train",
                       reranker: str | None = None, on_progress: Callable[[str, int, int], None] | None = None) -> int:
    """Score every mined question of ``split`` with ``teacher`` ("hybrid" or "cross-encoder", the
    latter with ``reranker`` = a CrossEncoder folder); returns how many questions are scored."""
    folder = Path(folder)
    mined = folder / f"negatives.{split}.jsonl"
    if not mined.exists():
        raise MissingInputError(f"{mined}: no mined negatives; run `ragtune synth negatives` first")
    texts = {doc_id: r["text"] for doc_id, r in read_corpus(folder).items()}
    if teacher == "hybrid":
        query = collection.pipeline.query
        scorer = hybrid_scorer(collection, texts, query.rrf_k, query.candidates)
    elif teacher == "cross-encoder":
        if not reranker:
            raise InputError("the cross-encoder teacher needs a reranker (a CrossEncoder folder): train one first")
        scorer = cross_encoder_scorer(reranker, texts, collection.pipeline.embedder.device)
    else:
        raise InputError(f"unknown teacher {teacher!r}: use hybrid or cross-encoder")
    out_path = teacher_path(folder, teacher, split)
    done = {r["query_id"] for r in iter_jsonl(out_path)} if out_path.exists() else set()
    questions = list(iter_jsonl(mined))
    with out_path.open("a") as out:
        for n, q in enumerate(questions, start=1):
            if q["query_id"] not in done:
                negatives = [c for c in q["negatives"] if c in texts]
                scores = scorer(q["query"], [q["positive"], *negatives])
                out.write(json.dumps({"query_id": q["query_id"], "query": q["query"], "positive": q["positive"],
                                      "negatives": negatives, "scores": scores}) + "\n")
                out.flush()
            if on_progress:
                on_progress(f"teacher ({teacher})", n, len(questions))
    return len(questions)


def distillation_rows(folder: str | Path, teacher: str, split: str = "train", num_negatives: int = 3) -> list[dict]:
    """(anchor, positive, negative_1..n, label) rows, ``label`` = the teacher's scores of the
    positive then each negative: what ``MarginMSELoss`` and ``DistillKLDivLoss`` read. Questions
    with fewer than ``num_negatives`` scored negatives are left out (one shape per batch)."""
    folder = Path(folder)
    path = teacher_path(folder, teacher, split)
    if not path.exists():
        raise MissingInputError(f"{path}: no teacher scores; run the teacher step first")
    texts = {doc_id: r["text"] for doc_id, r in read_corpus(folder).items()}
    rows = []
    for r in iter_jsonl(path):
        if len(r["negatives"]) < num_negatives:
            continue
        row = {"anchor": r["query"], "positive": texts[r["positive"]]}
        row.update({f"negative_{i}": texts[c] for i, c in enumerate(r["negatives"][:num_negatives], start=1)})
        row["label"] = [float(s) for s in r["scores"][:num_negatives + 1]]
        rows.append(row)
    return rows
