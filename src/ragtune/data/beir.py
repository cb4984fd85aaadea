"""BEIR folders: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv`` — read and written here
only, so every stage that makes one (synthetic queries, filters, SQuAD import, dataset contexts)
writes the same format that ``load_beir`` and any BEIR tool reads.

Example:
    >>> import tempfile
    >>> from ragtune.data.beir import corpus_record, load_beir, query_record, write_corpus, write_qrels, write_queries
    >>> folder = tempfile.mkdtemp()
    >>> write_corpus(folder, [corpus_record("d1", "Aspirin thins blood.", title="Aspirin")])
    True
    >>> write_queries(folder, [query_record("q1", "what thins blood")])
    >>> write_qrels(folder, "test", [("q1", "d1", 1)])
    1
    >>> ds = load_beir(folder, "test")
    >>> ds.corpus["d1"]["title"], ds.queries, ds.qrels
    ('Aspirin', {'q1': 'what thins blood'}, {'q1': {'d1': 1}})
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Iterable, Iterator

from ragtune.errors import InputError, MissingInputError

QRELS_HEADER = "query-id\tcorpus-id\tscore"


@dataclass
class BeirDataset:
    corpus: dict[str, dict]  # doc id -> {"title", "text"}
    queries: dict[str, str]  # query id -> text (only those judged in the split)
    qrels: dict[str, dict[str, int]]  # query id -> {doc id: relevance}


def corpus_record(doc_id: str, text: str, title: str = "", metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    record: dict[str, Any] = {"_id": doc_id, "title": title, "text": text}
    if metadata is not None:
        record["metadata"] = metadata
    return record


def query_record(query_id: str, text: str, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    record: dict[str, Any] = {"_id": query_id, "text": text}
    if metadata is not None:
        record["metadata"] = metadata
    return record


def _jsonl(records: Iterable[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def write_corpus(folder: str | Path, records: Iterable[dict]) -> bool:
    """Write ``corpus.jsonl``; an unchanged file is left alone (its mtime too, so an incremental
    ingest of the folder sees nothing new). Returns whether the file was (re)written."""
    path = Path(folder) / "corpus.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = _jsonl(records)
    if path.exists() and path.read_text() == text:
        return False
    path.write_text(text)
    return True


def write_queries(folder: str | Path, records: Iterable[dict]) -> None:
    path = Path(folder) / "queries.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_jsonl(records))


def append_queries(out: IO[str], records: Iterable[dict]) -> None:
    """Append to an open ``queries.jsonl`` and flush (a stopped generation keeps what it wrote)."""
    out.write(_jsonl(records))
    out.flush()


def write_qrels(folder: str | Path, split: str, judgements: Iterable[tuple[str, str, int]]) -> int:
    """Write ``qrels/<split>.tsv`` from (query id, doc id, relevance); returns the row count."""
    path = Path(folder) / "qrels" / f"{split}.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [f"{q}\t{d}\t{int(rel)}" for q, d, rel in judgements]
    path.write_text("\n".join([QRELS_HEADER, *rows]) + "\n")
    return len(rows)


def iter_jsonl(path: str | Path, skip_bad: bool = False) -> Iterator[dict]:
    """The JSON objects of a JSON Lines file. A line that is not a JSON object raises an
    InputError naming the file and line, or with ``skip_bad`` is skipped (the caller counts)."""
    with Path(path).open() as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as e:
                record = e
            if isinstance(record, dict):
                yield record
            elif not skip_bad:
                raise InputError(f"{path}:{n}: not a JSON object ({record}); fix or remove the line")


def read_corpus(folder: str | Path) -> dict[str, dict]:
    """Every corpus record by id, as written (title, text and metadata when present)."""
    return {r["_id"]: r for r in iter_jsonl(Path(folder) / "corpus.jsonl")}


def read_queries(folder: str | Path) -> list[dict]:
    """Every query record, in file order (judged or not)."""
    path = Path(folder) / "queries.jsonl"
    return list(iter_jsonl(path)) if path.exists() else []


def read_qrels(folder: str | Path, split: str) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with (Path(folder) / "qrels" / f"{split}.tsv").open() as f:
        reader = csv.reader(f, delimiter="\t")
        next(reader, None)  # header: query-id corpus-id score
        for row in reader:
            if row:
                qid, did, score = row
                qrels.setdefault(qid, {})[did] = int(score)
    return qrels


def load_beir(folder: str | Path, split: str = "test", skip_bad: bool = False) -> BeirDataset:
    """A BEIR split: its corpus, the queries judged in it and their qrels. With ``skip_bad``,
    corpus records that are not JSON objects with an ``_id`` are left out instead of failing.

    >>> ds = load_beir("../shared/data/scifact", split="test")  # doctest: +SKIP
    >>> len(ds.corpus), len(ds.queries), len(ds.qrels)  # doctest: +SKIP
    (5183, 300, 300)
    """
    folder = Path(folder)
    qrels_path = folder / "qrels" / f"{split}.tsv"
    for needed in (folder / "corpus.jsonl", folder / "queries.jsonl", qrels_path):
        if not needed.is_file():
            raise MissingInputError(f"{needed}: missing; a BEIR folder needs corpus.jsonl, queries.jsonl, qrels/{split}.tsv")
    qrels = read_qrels(folder, split)
    corpus = {str(r["_id"]): {"title": r.get("title") or "", "text": r.get("text") or ""}
              for r in iter_jsonl(folder / "corpus.jsonl", skip_bad) if not skip_bad or "_id" in r}
    queries = {r["_id"]: r["text"] for r in iter_jsonl(folder / "queries.jsonl") if r["_id"] in qrels}
    return BeirDataset(corpus, queries, qrels)
