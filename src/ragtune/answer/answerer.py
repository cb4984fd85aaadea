"""Retrieve → pack numbered context → generate (or read a span) → parse citations → abstain or answer.

Two answer modes (``answer.mode``): *generative*, where the LLM writes an answer citing ``[n]``,
and *extractive*, where a :mod:`reader <ragtune.answer.extractive>` returns a span of one
passage, cited as that passage.

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
from ragtune.answer.extractive import Reader, Span, make_reader
from ragtune.answer.grounding import ground, make_scorer
from ragtune.answer.prompt import Passage, build_messages, context_budget, pack_passages
from ragtune.collection import Collection
from ragtune.config import AnswerConfig
from ragtune.data.text import ABSTAIN, is_abstention
from ragtune.errors import InputError
from ragtune.models.generator import GenerationConfig, Generator
from ragtune.retrieve import Searcher
from ragtune.retrieve.strategies import expand, fuse
from ragtune.tracing import stage, stage_start
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
    abstain_reason: str | None  # "no_context" | "low_confidence" | "model" | "ungrounded"
    hits: list[Hit]
    passages: list[str]
    queries: list[str] = field(default_factory=list)  # what was searched (query strategy)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    tokens: dict[str, int] = field(default_factory=dict)
    confidence: float | None = None  # best dense similarity of the retrieved chunks
    span: Span | None = None  # extractive mode: where in which passage the answer was read
    mode: str = ""  # "extractive" | "generative": which path answered
    answered_by: str = ""  # the reader or generator model that wrote the text
    groundedness: float | None = None  # generative: share of the generated sentences their passages support
    unsupported: list[str] = field(default_factory=list)  # generated sentences the guard removed

    def to_dict(self) -> dict:
        out = asdict(self)
        out["hits"] = [h.to_dict() for h in self.hits]
        return out


class Answerer:
    """``generator`` writes answers (generative mode) and query rewrites (any mode, when a
    strategy asks for them); ``reader`` reads spans (extractive mode) and is the grounding
    guard's fallback in generative mode. With ``answer.mode=auto`` the mode follows what was
    handed in (only a generator: generative; only a reader: extractive) or, given both, the
    pipeline (:meth:`~ragtune.config.AnswerConfig.resolved_mode`)."""

    def __init__(self, collection: Collection, generator: Generator | None = None, config: AnswerConfig | None = None,
                 searcher: Searcher | None = None, reader: Reader | None = None):
        self.collection = collection
        self.generator = generator
        self.reader = reader
        self.config = config or collection.pipeline.answer
        self.searcher = searcher or Searcher(collection)
        self.mode = self._mode()
        needed = {"generative": generator, "extractive": reader}[self.mode]
        if needed is None:
            raise InputError(f"answer.mode={self.mode} needs a {'generator' if self.mode == 'generative' else 'reader'}")
        self._tokens: Generator | Reader = needed  # not None: checked above  # whose window bounds the context
        self._scorer = None if self.config.grounding == "off" else make_scorer(self.config.grounding, collection.embedder)

    def _mode(self) -> str:
        if self.config.mode != "auto":
            return self.config.mode
        if self.generator is not None and self.reader is None:
            return "generative"
        if self.reader is not None and self.generator is None:
            return "extractive"
        return self.config.resolved_mode(self.collection.pipeline.generator)

    @classmethod
    def from_pipeline(cls, collection: Collection, home=None) -> "Answerer":
        """The answerer the collection's pipeline describes (loads the models it names)."""
        from ragtune.models.generator import make_generator

        pipeline = collection.pipeline
        mode = pipeline.answer.resolved_mode(pipeline.generator)
        needs_llm = mode == "generative" or pipeline.query.strategy != "plain"
        generator = make_generator(pipeline.generator, home) if needs_llm else None
        reader = None
        if mode == "extractive" or pipeline.answer.grounding != "off":  # the grounding guard's fallback
            reader = make_reader(pipeline.reader, collection.embedder)
        return cls(collection, generator, reader=reader)

    @property
    def _llm(self) -> Generator:
        assert self.generator is not None  # generative mode: checked in __init__
        return self.generator

    def ask(self, question: str, principal: Principal, k: int | None = None) -> Answer:
        prepared = self._prepare(question, principal, k)
        if isinstance(prepared, Answer):
            return prepared
        messages, passages, hits, timings, queries = prepared
        if self.mode == "extractive":
            return self._read(question, passages, hits, timings, queries)
        t = time.perf_counter()
        with stage("generate") as span:
            gen = self._llm.generate(messages, self._gen_config())
            span.set_attributes({"tokens.prompt": gen.prompt_tokens, "tokens.completion": gen.completion_tokens})
        timings["generate"] = time.perf_counter() - t
        return self._generated(question, gen.text, passages, hits, timings,
                               {"prompt": gen.prompt_tokens, "completion": gen.completion_tokens}, queries)

    def stream(self, question: str, principal: Principal, k: int | None = None) -> Iterator[str | Answer]:
        """Yield text pieces as they are generated, then the finished :class:`Answer`."""
        prepared = self._prepare(question, principal, k)
        if isinstance(prepared, Answer):
            yield prepared.text
            yield prepared
            return
        messages, passages, hits, timings, queries = prepared
        if self.mode == "extractive":
            answer = self._read(question, passages, hits, timings, queries)
            yield answer.text
            yield answer
            return
        t = time.perf_counter()
        pieces = []
        # Not a `with` span around the loop: a generator's span would stay open (and current)
        # across every yield to the caller; one span timed from start to the last token instead.
        span = stage_start("generate")
        try:
            for piece in self._llm.stream(messages, self._gen_config()):
                pieces.append(piece)
                yield piece
            timings["generate"] = time.perf_counter() - t
            text = "".join(pieces).strip()
            usage = {"prompt": sum(self._llm.count_tokens(m["content"]) for m in messages),
                     "completion": self._llm.count_tokens(text)}
            span.set_attributes({"tokens.prompt": usage["prompt"], "tokens.completion": usage["completion"]})
        finally:
            span.end()
        yield self._generated(question, text, passages, hits, timings, usage, queries)

    # -- stages ---------------------------------------------------------------------------------
    def _prepare(self, question: str, principal: Principal, k: int | None):
        timings: dict[str, float] = {}
        k = k or self.config.k
        query_cfg = self.collection.pipeline.query
        t = time.perf_counter()
        queries = expand(question, query_cfg.strategy, self.generator, query_cfg.max_subqueries)
        timings["rewrite"] = time.perf_counter() - t
        t = time.perf_counter()
        # dense_scores: abstention reads each hit's cosine, which a plain hybrid search lacks.
        lists = [self.searcher.search(q, principal, k=k, dense_scores=True) for q in queries]
        hits = lists[0] if len(lists) == 1 else fuse(lists, k, query_cfg.rrf_k)
        timings["retrieve"] = time.perf_counter() - t
        t = time.perf_counter()
        budget = context_budget(self.config, self._tokens.context_window, self._tokens.count_tokens, question)
        passages = pack_passages(hits, budget, self._tokens.count_tokens, self.config.parents(self.mode))
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

    def _read(self, question: str, passages: list[Passage], hits: list[Hit], timings: dict[str, float],
              queries: list[str]) -> Answer:
        t = time.perf_counter()
        assert self.reader is not None  # extractive mode: checked in __init__
        with stage("read", passages=len(passages)):
            span = self.reader.read(question, [p.text for p in passages])
        timings["read"] = time.perf_counter() - t
        margin = self.collection.pipeline.reader.null_margin
        if span is None:
            answer = self._finish(question, ABSTAIN, passages, hits, timings, {}, queries, "model")
            answer.mode, answer.answered_by = "extractive", self.reader.name
            return answer
        if margin is not None and span.no_answer_score is not None and span.no_answer_score - span.score > margin:
            answer = self._finish(question, ABSTAIN, passages, hits, timings, {}, queries, "model")
            answer.span, answer.mode, answer.answered_by = span, "extractive", self.reader.name
            return answer
        # The span is exact (offsets into the passage); the answer is it (or its sentence) as prose.
        unit = span.sentence if self.collection.pipeline.reader.answer_unit == "sentence" and span.sentence else span.text
        answer = self._finish(question, " ".join(unit.split()), passages, hits, timings, {}, queries,
                              cite=[span.passage])
        answer.span = span
        answer.mode, answer.answered_by = "extractive", self.reader.name
        return answer

    def _generated(self, question: str, text: str, passages: list[Passage], hits: list[Hit],
                   timings: dict[str, float], tokens: dict[str, int], queries: list[str]) -> Answer:
        """A generated answer through the grounding guard: unsupported sentences removed; when
        none is supported, the reader's span (or "I don't know") instead."""
        if self._scorer is None or is_abstention(text):
            return self._by_generator(self._finish(question, text, passages, hits, timings, tokens, queries))
        t = time.perf_counter()
        g = ground(text, [p.text for p in passages], self._scorer, self.config.min_support, self.config.min_groundedness,
                   question)
        timings["ground"] = time.perf_counter() - t
        if g.text:
            answer = self._by_generator(self._finish(question, g.text, passages, hits, timings, tokens, queries))
        elif self.reader is not None:
            answer = self._read(question, passages, hits, timings, queries)  # says "extractive", and by which reader
        else:
            answer = self._by_generator(self._finish(question, ABSTAIN, passages, hits, timings, tokens, queries,
                                                     "ungrounded"))
        answer.groundedness, answer.unsupported = g.groundedness, g.dropped
        return answer

    def _by_generator(self, answer: Answer) -> Answer:
        answer.mode, answer.answered_by = "generative", self._llm.name
        return answer

    def _gen_config(self) -> GenerationConfig:
        c = self.config
        return GenerationConfig(max_new_tokens=c.max_new_tokens, temperature=c.temperature, top_p=c.top_p,
                                repetition_penalty=c.repetition_penalty)

    def _finish(self, question: str, text: str, passages: list[Passage], hits: list[Hit], timings: dict[str, float],
                tokens: dict[str, int], queries: list[str], reason: str | None = None,
                cite: list[int] | None = None) -> Answer:
        abstained = reason is not None or is_abstention(text)
        numbers = cite if cite is not None else cited_numbers(text, len(passages))
        citations = [] if abstained else [
            Citation(n, p.doc_id, p.hits[0].chunk_id, p.hits[0].title, p.hits[0].source)
            for n in numbers for p in [passages[n - 1]]
        ]
        return Answer(
            id=uuid.uuid4().hex, question=question, text=ABSTAIN if abstained and reason else text,
            citations=citations, abstained=abstained, abstain_reason=reason or ("model" if abstained else None),
            hits=hits, passages=[p.text for p in passages], queries=queries,
            timings=timings, tokens=tokens,
            confidence=retrieval_confidence(hits),
            mode=self.mode,
        )
