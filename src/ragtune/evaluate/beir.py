"""BEIR folders: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``.

Example:
    >>> from ragtune.evaluate.beir import load_beir
    >>> ds = load_beir("../shared/data/scifact", split="test")  # doctest: +SKIP
    >>> len(ds.corpus), len(ds.queries), len(ds.qrels)  # doctest: +SKIP
    (5183, 300, 300)
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path


@dataclass
class BeirDataset:
    corpus: dict[str, dict]  # doc id -> {"title", "text"}
    queries: dict[str, str]  # query id -> text (only those judged in the split)
    qrels: dict[str, dict[str, int]]  # query id -> {doc id: relevance}


def load_beir(folder: str | Path, split: str = "test") -> BeirDataset:
    folder = Path(folder)
    qrels_path = folder / "qrels" / f"{split}.tsv"
    for needed in (folder / "corpus.jsonl", folder / "queries.jsonl", qrels_path):
        if not needed.is_file():
            raise FileNotFoundError(f"{needed}: missing; a BEIR folder needs corpus.jsonl, queries.jsonl, qrels/{split}.tsv")
    qrels: dict[str, dict[str, int]] = {}
    with qrels_path.open() as f:
        reader = csv.reader(f, delimiter="\t")
        next(reader)  # header: query-id corpus-id score
        for qid, did, score in reader:
            qrels.setdefault(qid, {})[did] = int(score)
    corpus = {}
    with (folder / "corpus.jsonl").open() as f:
        for line in f:
            r = json.loads(line)
            corpus[r["_id"]] = {"title": r.get("title", ""), "text": r["text"]}
    queries = {}
    with (folder / "queries.jsonl").open() as f:
        for line in f:
            r = json.loads(line)
            if r["_id"] in qrels:
                queries[r["_id"]] = r["text"]
    return BeirDataset(corpus, queries, qrels)
