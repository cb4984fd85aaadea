"""RAG-shaped fine-tuning examples: the model learns on exactly the prompt it will see at
answer time.

For each question of a SQuAD-format set (COVID-QA, SQuAD, ``ragtune synth answers`` output) the
collection's real retrieval runs, the passages are packed and numbered by the answer path's own
prompt builder, and the target is the short gold answer with its citation, ``"<answer> [n]"``.
Retrieval misses are repaired by putting the gold chunk among the retrieved distractors (at a
random position, so the model cannot learn "the answer is in [1]"); a fraction of questions
lose every passage of their gold context and are taught to answer "I don't know".

Example:
    >>> from ragtune.synth.sft import SFTDataConfig, rag_sft_examples
    >>> rows = rag_sft_examples(collection, examples, tokenizer_count, 2048)  # doctest: +SKIP
    >>> rows[0]["completion"][0]["content"]  # doctest: +SKIP
    'the spike protein [2]'
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ragtune.answer.prompt import Passage, build_messages, context_budget, pack_passages
from ragtune.collection import Collection
from ragtune.config import AnswerConfig
from ragtune.data.beir import iter_jsonl
from ragtune.data.spans import answer_rank, context_doc_id
from ragtune.data.squad import QAExample
from ragtune.data.text import ABSTAIN, normalize_answer
from ragtune.errors import InputError, MissingInputError
from ragtune.retrieve import Searcher
from ragtune.synth.scope import read_scope
from ragtune.types import HIT_FIELDS, Hit, ServicePrincipal


@dataclass
class SFTDataConfig:
    unanswerable_fraction: float = 0.15  # questions whose gold context is withheld → "I don't know"
    k: int | None = None  # passages retrieved per question; None: the collection's answer.k
    cite: bool = True  # append " [n]" (the gold passage's number) to the answer
    seed: int = 0


@dataclass
class SFTDataReport:
    examples: int = 0
    answerable: int = 0
    unanswerable: int = 0
    gold_inserted: int = 0  # retrieval missed the gold chunk; it replaced a distractor
    skipped: int = 0  # no chunk of the collection holds the answer span (context not indexed?)

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def rag_sft_examples(collection: Collection, examples: list[QAExample], count: Callable[[str], int],
                     context_window: int, config: SFTDataConfig | None = None,
                     answer_config: AnswerConfig | None = None,
                     report: SFTDataReport | None = None) -> list[dict]:
    """prompt/completion rows (chat messages) for ``ragtune.train.generator.train_generator``.

    The collection must hold the examples' contexts as documents ``<article>-p<paragraph>``
    (:func:`ragtune.ingest.datasets.index_contexts`)."""
    config = config or SFTDataConfig()
    answer_config = answer_config or collection.pipeline.answer
    report = report if report is not None else SFTDataReport()
    rng = random.Random(config.seed)
    k = config.k or answer_config.k
    searcher = Searcher(collection)
    principal = ServicePrincipal(acl=tuple(collection.acl_tokens()))
    chunks = _chunks_by_doc(collection)
    parents = answer_config.parents("generative")  # the rows train a generator
    rows = []
    for ex in examples:
        hits = searcher.search(ex.question, principal, k=k)
        budget = context_budget(answer_config, context_window, count, ex.question)
        if not ex.answers or rng.random() < config.unanswerable_fraction:
            passages = _without_answer(hits, ex, budget, count, parents)
            target = ABSTAIN
            report.unanswerable += 1
        else:
            gold = _gold_chunk(chunks.get(context_doc_id(ex), []), ex)
            if gold is None:
                report.skipped += 1
                continue
            if answer_rank(hits, ex) is None:
                hits = [h for h in hits if h.chunk_id != gold.chunk_id][: k - 1]
                hits.insert(rng.randrange(len(hits) + 1), gold)
                report.gold_inserted += 1
            passages = pack_passages(hits, budget, count, parents)
            number = _passage_of(passages, gold.chunk_id)
            if number is None:  # the gold passage did not fit the budget: it goes first instead
                passages = pack_passages([gold] + [h for h in hits if h.chunk_id != gold.chunk_id], budget, count,
                                         parents)
                number = 1
            target = f"{ex.answers[0]} [{number}]" if config.cite else ex.answers[0]
            report.answerable += 1
        rows.append({"id": ex.id, "prompt": build_messages(ex.question, passages, answer_config),
                     "completion": [{"role": "assistant", "content": target}]})
    report.examples = len(rows)
    return rows


def _chunks_by_doc(collection: Collection) -> dict[str, list[Hit]]:
    out: dict[str, list[Hit]] = {}
    for p in collection.store.scroll_payloads(list(HIT_FIELDS)):
        out.setdefault(p.get("doc_id", ""), []).append(Hit.from_payload(p))
    return out


def _gold_chunk(doc_chunks: list[Hit], ex: QAExample) -> Hit | None:
    ranked = sorted(doc_chunks, key=lambda h: h.start)
    rank = answer_rank(ranked, ex)
    return ranked[rank - 1] if rank else None


def _without_answer(hits: list[Hit], ex: QAExample, budget: int, count: Callable[[str], int],
                    use_parents: bool) -> list[Passage]:
    """The retrieved passages minus every one from the gold context or containing a gold answer."""
    golds = [f" {normalize_answer(a)} " for a in ex.answers if normalize_answer(a)]
    doc = context_doc_id(ex)

    def clean(h: Hit) -> bool:
        text = f" {normalize_answer(h.parent_text if use_parents else h.text)} "
        return h.doc_id != doc and not any(g in text for g in golds)

    return pack_passages([h for h in hits if clean(h)], budget, count, use_parents)


def _passage_of(passages: list[Passage], chunk_id: str) -> int | None:
    for p in passages:
        if any(h.chunk_id == chunk_id for h in p.hits):
            return p.number
    return None


def citation_positions(rows: list[dict]) -> Counter:
    """How often the gold passage is [1], [2], …: a check that the answer is not always first."""
    import re

    return Counter(m.group(1) for r in rows for m in [re.search(r"\[(\d+)\]$", r["completion"][0]["content"])] if m)


def sft_rows_from_file(collection: Collection, data: Path, base: str, limit: int | None = None,
                       eval_fraction: float = 0.1, unanswerable_fraction: float = 0.15,
                       home: str | Path | None = None,
                       on_progress: Callable[[str, int, int], None] | None = None) -> tuple[list[dict], list[dict], dict]:
    """(training rows, held-out rows, what was built) for ``ragtune train generator --data``:
    from a SQuAD file, RAG-shaped rows through the collection's retrieval (its contexts are
    indexed first; held out: ``eval_fraction`` of the articles); from a ready prompt/completion
    ``.jsonl``, its rows as they are (nothing held out)."""
    from transformers import AutoConfig, AutoTokenizer

    from ragtune.data.squad import load_squad, sample, split_by_article
    from ragtune.ingest.datasets import index_contexts
    from ragtune.models.generator import base_model_path

    if not data.is_file():
        raise MissingInputError(f"--data {data}: no such file")
    if data.suffix == ".jsonl":
        rows = []
        for n, row in enumerate(iter_jsonl(data), start=1):
            if not {"prompt", "completion"} <= set(row):
                raise InputError(f"{data}:{n}: each line needs 'prompt' and 'completion' (lists of chat messages)")
            rows.append(row)
        rows = rows[:limit] if limit else rows
        return rows, [], {"examples": len(rows)}
    examples = sample(load_squad(data), limit)
    train, held = split_by_article(examples, eval_fraction) if eval_fraction > 0 else (examples, [])
    # Restricted data (its .scope.json says whose) is indexed for its own readers only, never public.
    scope = read_scope(data)
    acl = scope.readers_acl() if scope is not None else None
    if scope is not None and acl is None:
        raise InputError(f"{data}: its text comes from documents no single group or user may all read "
                         f"(scope {scope.to_list()}); make the data with one --scope")
    index_contexts(collection, examples, data.stem, home, on_progress, acl=acl)
    path = base_model_path(base, home)
    tokenizer = AutoTokenizer.from_pretrained(path)
    window = int(getattr(AutoConfig.from_pretrained(path), "max_position_embeddings", 2048))

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    report = SFTDataReport()
    config = SFTDataConfig(unanswerable_fraction=unanswerable_fraction)
    train_rows = rag_sft_examples(collection, train, count, window, config, report=report)
    eval_rows = rag_sft_examples(collection, held, count, window, config)
    return train_rows, eval_rows, {"examples": len(train_rows), "eval_examples": len(eval_rows),
                                   "eval_articles": len({ex.article_id for ex in held}), "sft_data": report.to_dict()}
