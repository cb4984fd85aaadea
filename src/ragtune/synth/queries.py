"""Synthetic queries: for each chunk of a collection, questions that the chunk answers.

Output is a BEIR folder any tool can read (``corpus.jsonl`` of all the chunks, as the index
embeds them; ``queries.jsonl`` with every generated candidate; ``qrels/`` written by the filters), so
generation, filtering, mining and training can each be run, inspected and replaced alone.

Generation is resumable: candidates are appended and flushed one chunk at a time, and a re-run
skips chunks that already have theirs. Any generator backend works: a large model behind an
OpenAI-compatible endpoint where a user has one, or the local model (with the question-writing
adapter ``ragtune train qgen`` makes, where present).

Example:
    >>> from ragtune.synth.queries import QueryGenConfig, generate_queries
    >>> n = generate_queries(collection, generator, "synth/run1", QueryGenConfig(max_chunks=500))  # doctest: +SKIP
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ragtune.collection import Collection
from ragtune.data import beir
from ragtune.models.generator import (
    GenerationConfig,
    Generator,
    batch_size_for,
    generate_texts,
)

QG_SYSTEM = "You write the questions people type into a search box."
QG_USER = ("Passage:\n{passage}\n\nWrite one specific question that this passage answers. "
           "Reply with the question only.")


@dataclass
class QueryGenConfig:
    per_chunk: int = 1  # >1 samples (temperature below) to get different questions
    max_chunks: int | None = None  # a random sample of chunks; None = all
    min_chunk_words: int = 20  # headings, reference lists and stubs make no questions
    seed: int = 0
    max_new_tokens: int = 48
    temperature: float = 0.7  # used only when per_chunk > 1; one question per chunk is greedy
    max_passage_tokens: int = 400
    batch_size: int = 8  # prompts per forward pass (local model)


def qg_messages(passage: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": QG_SYSTEM}, {"role": "user", "content": QG_USER.format(passage=passage)}]


def first_question(reply: str) -> str:
    """The model's question: its first non-empty line without list markers or quotes.
    Not validated here; the filters decide (and count) what is malformed.

    >>> first_question('  1. "What limits the rate of X?"\\nBecause...')
    'What limits the rate of X?'
    """
    for line in reply.splitlines():
        line = re.sub(r"^\s*(?:[-*•]|\(?\d+[.):]|q(?:uestion)?\s*\d*\s*[.:])\s*", "", line, flags=re.IGNORECASE)
        line = line.strip().strip('"“”').strip()
        if line:
            return line
    return ""


def select_chunks(all_chunks: list[dict], config: QueryGenConfig) -> list[dict]:
    chunks = [c for c in all_chunks if len(c.get("text", "").split()) >= config.min_chunk_words]
    if config.max_chunks is not None and config.max_chunks < len(chunks):
        chunks = sorted(random.Random(config.seed).sample(chunks, config.max_chunks), key=lambda c: c["chunk_id"])
    return chunks


def write_corpus(chunks: list[dict], folder: Path) -> None:
    # The document side is the text the index embeds (title/heading prefix included), so a model
    # trained on these pairs sees documents exactly as it will at search time.
    beir.write_corpus(folder, (beir.corpus_record(c["chunk_id"], c.get("search_text") or c["text"],
                                                  metadata={"doc_id": c["doc_id"], "point_id": c["point_id"]})
                               for c in chunks))


def generate_queries(collection: Collection, generator: Generator, folder: str | Path,
                     config: QueryGenConfig | None = None,
                     on_progress: Callable[[str, int, int], None] | None = None) -> int:
    """Generate candidates into ``folder``; returns how many candidates it holds in total."""
    config = config or QueryGenConfig()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    all_chunks = collection.chunks()
    chunks = select_chunks(all_chunks, config)
    if not (folder / "corpus.jsonl").exists():
        write_corpus(all_chunks, folder)  # every chunk: negatives may be any of them
    queries_path = folder / "queries.jsonl"
    done = set()
    total = 0
    for record in beir.read_queries(folder):
        done.add(record["metadata"]["chunk_id"])
        total += 1
    todo = [c for c in chunks if c["chunk_id"] not in done]
    finished = len(chunks) - len(todo)
    step = batch_size_for(generator, config.batch_size)
    with queries_path.open("a") as out:
        for start in range(0, len(todo), step):
            part = todo[start:start + step]
            prompts = [qg_messages(_truncate(c["text"], config.max_passage_tokens, generator.count_tokens)) for c in part]
            replies: list[list[str]] = [[] for _ in part]
            for i in range(config.per_chunk):
                gen_cfg = GenerationConfig(max_new_tokens=config.max_new_tokens, repetition_penalty=1.1,
                                           temperature=config.temperature if config.per_chunk > 1 else 0.0,
                                           seed=config.seed + i)
                texts = generate_texts(generator, prompts, gen_cfg)
                for j, text in enumerate(texts):
                    replies[j].append(text)
            records = [beir.query_record(f"{chunk['chunk_id']}/q{i}", first_question(reply),
                                         {"chunk_id": chunk["chunk_id"], "doc_id": chunk["doc_id"],
                                          "generator": generator.name})
                       for chunk, texts in zip(part, replies) for i, reply in enumerate(texts)]
            beir.append_queries(out, records)  # flushed: a stopped run keeps every finished chunk
            total += len(records)
            finished += len(part)
            if on_progress:
                on_progress("chunks", finished, len(chunks))
    return total


def _truncate(text: str, max_tokens: int, count: Callable[[str], int]) -> str:
    if count(text) <= max_tokens:
        return text
    words = text.split()
    lo, hi = 1, len(words)
    while lo < hi:  # longest word prefix within the budget
        mid = (lo + hi + 1) // 2
        if count(" ".join(words[:mid])) <= max_tokens:
            lo = mid
        else:
            hi = mid - 1
    return " ".join(words[:lo])


def qg_training_examples(examples, limit: int | None = None, seed: int = 0) -> list[dict]:
    """(passage → question) SFT examples from SQuAD-format QA: one question per paragraph, in the
    very prompt ``generate_queries`` uses, so the trained adapter sees at training what it gets at use."""
    by_paragraph: dict[tuple[str, int], list] = {}
    for ex in examples:
        if ex.question.strip().endswith("?"):
            by_paragraph.setdefault((ex.article_id, ex.paragraph_index), []).append(ex)
    rng = random.Random(seed)
    picked = [rng.choice(group) for _, group in sorted(by_paragraph.items())]
    rng.shuffle(picked)
    if limit is not None:
        picked = picked[:limit]
    return [{"prompt": qg_messages(ex.context), "completion": [{"role": "assistant", "content": ex.question.strip()}]}
            for ex in picked]
