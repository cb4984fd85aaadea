"""Training triples for end-to-end RAG: (question, answer, gold chunk) from a SQuAD-format set.

The gold chunk is the stored chunk of the question's context that holds the answer span (the
same rule as the QA evaluation's hit@k). It is what the contrastive term and the DALM-style
baseline use; the RAG-Sequence loss itself needs only the question and the answer.

Example:
    >>> from ragtune.train.rag.data import rag_examples
    >>> examples, skipped = rag_examples(collection, load_squad("covidqa-dev.json"))  # doctest: +SKIP
    >>> examples[0].gold  # the point id of the chunk holding the answer  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ragtune.collection import Collection
from ragtune.data.spans import answer_rank, context_doc_id
from ragtune.data.squad import QAExample
from ragtune.types import Hit


@dataclass
class RagExample:
    id: str
    question: str
    answer: str
    gold: str  # point id of the chunk holding the answer

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def rag_examples(collection: Collection, examples: list[QAExample]) -> tuple[list[RagExample], int]:
    """Triples for the answerable ``examples`` whose answer span lies in a stored chunk; returns
    them and how many were skipped (unanswerable, or context not indexed)."""
    by_doc: dict[str, list[Hit]] = {}
    for p in collection.store.scroll_payloads(["doc_id", "start", "end"]):
        # The point id stands for the chunk: training retrieves point ids from its index version.
        by_doc.setdefault(p.get("doc_id", ""), []).append(Hit.from_payload({**p, "chunk_id": p["point_id"]}))
    out, skipped = [], 0
    for ex in examples:
        chunks = sorted(by_doc.get(context_doc_id(ex), []), key=lambda h: h.start)
        rank = answer_rank(chunks, ex) if ex.answers else None
        if rank is None:
            skipped += 1
            continue
        out.append(RagExample(ex.id, ex.question, ex.answers[0], chunks[rank - 1].chunk_id))
    return out, skipped
