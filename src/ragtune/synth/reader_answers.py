"""Self-labelled QA for the reader: the collection's synthetic questions, answered on their own
chunk by a trained reader, kept where it is confident — the label-free domain data a span model
can train on when no teacher LLM writes usable answers.

The packaged 135M model is a poor answer teacher (it paraphrases, so its triples fail the
verbatim-span check), but it writes questions, and the round-trip filter keeps those whose chunk
retrieval finds. A SQuAD-trained reader then points at the span of that chunk that answers each
one; a span is kept only when the reader prefers it to "no answer" by ``min_margin`` (its own
confidence), so the reader trains on the domain's vocabulary and phrasing with answers it was
sure of: self-training, the classic way to adapt a reader without labels.

Example:
    >>> from ragtune.synth.reader_answers import reader_answers
    >>> report = reader_answers(collection, "synth/default", reader, "synth/default/reader-qa.json")  # doctest: +SKIP
    >>> report["kept"], report["questions"]  # doctest: +SKIP
    (212, 340)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ragtune.answer.extractive import Reader
from ragtune.collection import Collection
from ragtune.data import beir
from ragtune.data.squad import QAExample, save_squad
from ragtune.errors import MissingInputError
from ragtune.synth.scope import write_scope
from ragtune.types import Scope


def reader_answers(collection: Collection, folder: str | Path, reader: Reader, out_path: str | Path,
                   min_margin: float = 0.0, splits: tuple[str, ...] = ("train",),
                   on_progress: Callable[[str, int, int], None] | None = None) -> dict[str, int]:
    """Answer the filtered synthetic questions of ``folder`` (its ``splits``) from their chunks with
    ``reader``; write the confident ones to ``out_path`` (SQuAD JSON). Returns the counts."""
    folder = Path(folder)
    qrels = {}
    for split in splits:
        if not (folder / "qrels" / f"{split}.tsv").exists():
            raise MissingInputError(f"{folder}: no qrels/{split}.tsv; filter the questions first (`ragtune synth filter`)")
        qrels.update(beir.read_qrels(folder, split))
    queries = {q["_id"]: q for q in beir.read_queries(folder) if q["_id"] in qrels}
    chunks = {c["chunk_id"]: c for c in collection.chunks()}
    kept: list[QAExample] = []
    for n, (qid, q) in enumerate(sorted(queries.items()), start=1):
        chunk = chunks.get(q["metadata"]["chunk_id"])
        span = reader.read(q["text"], [chunk["text"]]) if chunk else None
        confident = span is not None and span.text.strip() and (
            span.no_answer_score is None or span.score - span.no_answer_score > min_margin)
        if confident and span is not None and chunk is not None:
            kept.append(QAExample(qid, q["text"], chunk["text"], [span.text], [span.start],
                                  chunk.get("title", ""), chunk["doc_id"]))
        if on_progress:
            on_progress("questions answered", n, len(queries))
    save_squad(kept, out_path)
    # Whose text the answers are: the chunks they were read from (a scoped handle offers only its own).
    write_scope(Path(out_path), Scope.of(chunks[queries[ex.id]["metadata"]["chunk_id"]].get("acl", []) for ex in kept))
    return {"questions": len(queries), "kept": len(kept)}
