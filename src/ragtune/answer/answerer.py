"""Retrieve → pack numbered context → generate → parse citations → abstain or answer.

Example:
    >>> from ragtune.answer import Answerer
    >>> answer = Answerer(collection, generator).ask("How many leave days?", principal)  # doctest: +SKIP
    >>> answer.text, [c.doc_id for c in answer.citations], answer.abstained  # doctest: +SKIP
    ('Employees get 25 days [1].', ['kb/leave.md'], False)
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Iterator

from ragtune.answer.abstain import retrieval_confidence
from ragtune.answer.citations import cited_numbers
from ragtune.answer.prompt import Passage, build_messages, context_budget, pack_passages
from ragtune.collection import Collection
from ragtune.config import AnswerConfig
from ragtune.evaluate.qa import ABSTAIN, is_abstention
from ragtune.models.generator import GenerationConfig, Generator
from ragtune.retrieve import Searcher
from ragtune.retrieve.strategies import expand, fuse
from ragtune.types import Hit, Principal


@dataclass
class Citation:
    number: int
    doc_id: str
    chunk_id: str
    title: str
    source: str


@dataclass
class Answer:
    id: str
    question: str
    text: str
    citations: list[Citation]
    abstained: bool
    abstain_reason: str | None  # "no_context" | "low_confidence" | "model"
    hits: list[Hit]
    passages: list[str]
    queries: list[str] = field(default_factory=list)  # what was searched (query strategy)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    tokens: dict[str, int] = field(default_factory=dict)
    confidence: float | None = None  # best dense similarity of the retrieved chunks

    def to_dict(self) -> dict:
        out = asdict(self)
        out["hits"] = [h.to_dict() for h in self.hits]
        return out


class Answerer:
    def __init__(self, collection: Collection, generator: Generator, config: AnswerConfig | None = None,
                 searcher: Searcher | None = None):
        self.collection = collection
        self.generator = generator
        self.config = config or collection.pipeline.answer
        self.searcher = searcher or Searcher(collection)

    def ask(self, question: str, principal: Principal, k: int | None = None) -> Answer:
        prepared = self._prepare(question, principal, k)
        if isinstance(prepared, Answer):
            return prepared
        messages, passages, hits, timings, queries = prepared
        t = time.perf_counter()
        gen = self.generator.generate(messages, self._gen_config())
        timings["generate"] = time.perf_counter() - t
        return self._finish(question, gen.text, passages, hits, timings,
                            {"prompt": gen.prompt_tokens, "completion": gen.completion_tokens}, queries)

    def stream(self, question: str, principal: Principal, k: int | None = None) -> Iterator[str | Answer]:
        """Yield text pieces as they are generated, then the finished :class:`Answer`."""
        prepared = self._prepare(question, principal, k)
        if isinstance(prepared, Answer):
            yield prepared.text
            yield prepared
            return
        messages, passages, hits, timings, queries = prepared
        t = time.perf_counter()
        pieces = []
        for piece in self.generator.stream(messages, self._gen_config()):
            pieces.append(piece)
            yield piece
        timings["generate"] = time.perf_counter() - t
        text = "".join(pieces).strip()
        yield self._finish(question, text, passages, hits, timings,
                           {"prompt": sum(self.generator.count_tokens(m["content"]) for m in messages),
                            "completion": self.generator.count_tokens(text)}, queries)

    # -- stages ---------------------------------------------------------------------------------
    def _prepare(self, question: str, principal: Principal, k: int | None):
        timings: dict[str, float] = {}
        k = k or self.config.k
        query_cfg = self.collection.pipeline.query
        t = time.perf_counter()
        queries = expand(question, query_cfg.strategy, self.generator, query_cfg.max_subqueries)
        timings["rewrite"] = time.perf_counter() - t
        t = time.perf_counter()
        lists = [self.searcher.search(q, principal, k=k) for q in queries]
        hits = lists[0] if len(lists) == 1 else fuse(lists, k, query_cfg.rrf_k)
        timings["retrieve"] = time.perf_counter() - t
        t = time.perf_counter()
        budget = context_budget(self.config, self.generator.context_window, self.generator.count_tokens, question)
        passages = pack_passages(hits, budget, self.generator.count_tokens, self.config.use_parents)
        messages = build_messages(question, passages, self.config)
        timings["prompt"] = time.perf_counter() - t
        if not passages:  # nothing visible was retrieved: no model call can ground an answer
            return self._finish(question, ABSTAIN, [], hits, timings, {"prompt": 0, "completion": 0}, queries,
                                "no_context")
        floor = self.config.min_retrieval_confidence
        confidence = retrieval_confidence(hits)
        if floor is not None and confidence is not None and confidence < floor:
            return self._finish(question, ABSTAIN, passages, hits, timings, {"prompt": 0, "completion": 0},
                                queries, "low_confidence")
        return messages, passages, hits, timings, queries

    def _gen_config(self) -> GenerationConfig:
        c = self.config
        return GenerationConfig(max_new_tokens=c.max_new_tokens, temperature=c.temperature, top_p=c.top_p,
                                repetition_penalty=c.repetition_penalty)

    def _finish(self, question: str, text: str, passages: list[Passage], hits: list[Hit], timings: dict[str, float],
                tokens: dict[str, int], queries: list[str], reason: str | None = None) -> Answer:
        abstained = reason is not None or is_abstention(text)
        citations = [] if abstained else [
            Citation(n, p.doc_id, p.hits[0].chunk_id, p.hits[0].title, p.hits[0].source)
            for n in cited_numbers(text, len(passages)) for p in [passages[n - 1]]
        ]
        return Answer(
            id=uuid.uuid4().hex, question=question, text=ABSTAIN if abstained and reason else text,
            citations=citations, abstained=abstained, abstain_reason=reason or ("model" if abstained else None),
            hits=hits, passages=[p.text for p in passages], queries=queries,
            timings=timings, tokens=tokens,
            confidence=retrieval_confidence(hits),
        )
