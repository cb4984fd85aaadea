"""Synthetic queries: for each chunk of a collection, queries that the chunk answers — questions,
claims or keyword queries (:mod:`ragtune.synth.query_types`), in a mix, or in the style of up to 8
real queries the user gives (``examples``: no relevance labels needed; their kinds set the mix).

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
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ragtune.collection import Collection
from ragtune.data import beir
from ragtune.errors import InputError
from ragtune.models.generator import (
    GenerationConfig,
    Generator,
    batch_size_for,
    generate_texts,
)
from ragtune.synth.query_types import QUERY_TYPES, infer_type
from ragtune.synth.style import copies_example

QG_SYSTEM = "You write the queries people type into a search box."
QG_USER = "Passage:\n{passage}\n\n{instruction}"
QG_EXAMPLES = "\nWrite it in the style and length of these real queries:\n{examples}"
# Gate probes are asked for in other words than the passage's: a probe that copies the chunk's
# wording favours whichever retriever matches words, and is the habit training questions share.
QG_OWN_WORDS = "\nUse your own words, not the passage's."
MAX_EXAMPLES = 8
DEFAULT_TYPES = ("question", "claim", "keywords")


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
    types: tuple[str, ...] | None = None  # None: the kinds of ``examples``, else DEFAULT_TYPES in turn
    examples: tuple[str, ...] = ()  # up to MAX_EXAMPLES real queries whose style generation follows
    own_words: bool = False  # ask for the passage's content in other words (the gate's probes)

    def type_cycle(self) -> tuple[str, ...]:
        """The kinds chunks are given in turn: ``types``; or one entry per example (so 6 claims
        and 2 keyword queries give that mix); or the default mix."""
        if self.types:
            return tuple(self.types)
        if self.examples:
            return tuple(infer_type(e) for e in self.examples)
        return DEFAULT_TYPES


def check_examples(examples: list[str]) -> tuple[str, ...]:
    """Clean, de-duplicated example queries; more than MAX_EXAMPLES is an error (the prompt of a
    small model has no room, and Promptagator needed no more)."""
    cleaned = tuple(dict.fromkeys(e.strip() for e in examples if e.strip()))
    if len(cleaned) > MAX_EXAMPLES:
        raise InputError(f"{len(cleaned)} example queries: give at most {MAX_EXAMPLES}")
    return cleaned


def qg_messages(passage: str, kind: str = "question", examples: tuple[str, ...] = (),
                own_words: bool = False) -> list[dict[str, str]]:
    user = QG_USER.format(passage=passage, instruction=QUERY_TYPES[kind].instruction)
    if examples:
        same = [e for e in examples if infer_type(e) == kind] or list(examples)
        user += QG_EXAMPLES.format(examples="\n".join(f"- {e}" for e in same))
    if own_words:
        user += QG_OWN_WORDS
    return [{"role": "system", "content": QG_SYSTEM}, {"role": "user", "content": user}]


def token_budget(kind: str, config: QueryGenConfig, count: Callable[[str], int]) -> int:
    """New tokens a query of ``kind`` may take: a keyword query needs few, and with example
    queries twice the longest example of that kind (their length is part of their style; a small
    model otherwise writes on until the limit)."""
    limit = min(config.max_new_tokens, 16) if kind == "keywords" else config.max_new_tokens
    same = [e for e in config.examples if infer_type(e) == kind]
    if same:
        limit = min(limit, max(8, 2 * max(count(e) for e in same)))
    return limit


def kind_for(chunk_id: str, sample: int, cycle: tuple[str, ...]) -> str:
    """A chunk's kind for its ``sample``-th query: stable across runs (a resumed run agrees)."""
    return cycle[(zlib.crc32(chunk_id.encode()) + sample) % len(cycle)]


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
                     on_progress: Callable[[str, int, int], None] | None = None,
                     chunk_ids: set[str] | None = None) -> int:
    """Generate candidates into ``folder``; returns how many candidates it holds in total.
    ``chunk_ids``: write queries for these chunks only (the corpus still holds every chunk)."""
    config = config or QueryGenConfig()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    all_chunks = collection.chunks()
    chunks = select_chunks([c for c in all_chunks if chunk_ids is None or c["chunk_id"] in chunk_ids], config)
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
    cycle = config.type_cycle()
    unknown = [t for t in cycle if t not in QUERY_TYPES]
    if unknown:
        raise InputError(f"unknown query type(s) {unknown}: choose from {', '.join(QUERY_TYPES)}")
    with queries_path.open("a") as out:
        for start in range(0, len(todo), step):
            part = todo[start:start + step]
            passages = [_truncate(c["text"], config.max_passage_tokens, generator.count_tokens) for c in part]
            kinds = [[kind_for(c["chunk_id"], i, cycle) for i in range(config.per_chunk)] for c in part]
            replies: list[list[str]] = [[] for _ in part]
            for i in range(config.per_chunk):
                texts = [""] * len(part)
                for kind in dict.fromkeys(k[i] for k in kinds):  # one call per kind: each has its token budget
                    idx = [j for j, k in enumerate(kinds) if k[i] == kind]
                    gen_cfg = GenerationConfig(max_new_tokens=token_budget(kind, config, generator.count_tokens),
                                               repetition_penalty=1.1,
                                               temperature=config.temperature if config.per_chunk > 1 else 0.0,
                                               seed=config.seed + i)
                    prompts = [qg_messages(passages[j], kind, config.examples, config.own_words) for j in idx]
                    for j, text in zip(idx, generate_texts(generator, prompts, gen_cfg)):
                        texts[j] = text
                for j, text in enumerate(texts):
                    replies[j].append(text)
            records = [beir.query_record(f"{chunk['chunk_id']}/q{i}", text,
                                         {"chunk_id": chunk["chunk_id"], "doc_id": chunk["doc_id"],
                                          "generator": generator.name, "type": k[i],
                                          **({"copies_example": True} if copies_example(text, config.examples) else {})})
                       for chunk, k, texts in zip(part, kinds, replies) for i, reply in enumerate(texts)
                       for text in [QUERY_TYPES[k[i]].parse(reply)]]
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


def qg_training_examples(examples, limit: int | None = None, seed: int = 0,
                         types: tuple[str, ...] = ("question",), example_share: float = 0.25) -> list[dict]:
    """(passage → query) SFT examples from SQuAD-format QA: one per paragraph, its kind taken in
    turn from ``types`` (the kind written least so far among those the paragraph can make), its
    target built from a SQuAD question of that paragraph (the question; a claim the question and its
    answer make; its keywords), in the very prompt ``generate_queries`` uses, so the trained adapter
    sees at training what it gets at use. A paragraph without a claim
    rewrite (a third) gives another kind rather than being dropped.

    ``example_share`` of the prompts carry 2–8 example queries of their kind, targets of *other*
    articles, as ``--examples`` puts them: the writer learns that examples give the style and the
    passage the content (a writer never shown examples copied them: 350 of 500 SciFact queries were
    one example, reworded)."""
    by_paragraph: dict[tuple[str, int], list] = {}
    for ex in examples:
        by_paragraph.setdefault((ex.article_id, ex.paragraph_index), []).append(ex)
    rng = random.Random(seed)
    groups = [group for _, group in sorted(by_paragraph.items())]
    rng.shuffle(groups)
    out = []
    made = dict.fromkeys(types, 0)
    for n, group in enumerate(groups):
        by_kind = {k: [(ex, t) for ex in group for t in [QUERY_TYPES[k].from_squad(ex)] if t] for k in types}
        # The kind written least so far among those this paragraph can make (ties in turn), so the
        # mix stays even though a third of paragraphs have no claim rewrite.
        kind = min((k for k in types if by_kind[k]), key=lambda k: (made[k], (types.index(k) - n) % len(types)),
                   default="")
        if not kind:
            continue
        made[kind] += 1
        targets = by_kind[kind]
        ex, target = rng.choice(targets)
        out.append({"prompt": qg_messages(ex.context, kind), "completion": [{"role": "assistant", "content": target}],
                    "kind": kind, "article": ex.article_id, "passage": ex.context})
        if limit is not None and len(out) >= limit:
            break
    by_kind_targets: dict[str, list[tuple[str, str]]] = {}
    for r in out:
        by_kind_targets.setdefault(r["kind"], []).append((r["article"], r["completion"][0]["content"]))
    for row in out:
        if rng.random() < example_share:
            pool = [t for article, t in by_kind_targets[row["kind"]] if article != row["article"]]
            shown = tuple(rng.sample(pool, min(len(pool), rng.randint(2, MAX_EXAMPLES))))
            if shown:
                row["prompt"] = qg_messages(row["passage"], row["kind"], shown)
    return [{"prompt": r["prompt"], "completion": r["completion"]} for r in out]
