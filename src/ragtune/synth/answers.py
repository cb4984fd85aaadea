"""Synthetic answers (context distillation): a teacher writes (question, context, answer) triples
from a collection's chunks; the student then trains on them with the short answering prompt.

The teacher gets a long instruction with worked examples (the expensive prompt a small model
cannot afford at answer time) and must copy its answer verbatim from the passage: a triple is
kept only when the answer is a span of the chunk, so every kept row is a valid SQuAD answer with
its ``answer_start``. The teacher is any generator: a large model behind an OpenAI-compatible
endpoint (vLLM, NIM, Ollama), or the local one.

Output is a SQuAD-format file (``title`` = the document's title, ``document_id`` = its id, one
paragraph per chunk) that ``ragtune train generator --data`` and ``ragtune eval answers`` read.
Generation is resumable: triples are appended to ``triples.jsonl`` chunk by chunk and a re-run
skips chunks already tried.

Example:
    >>> from ragtune.synth.answers import parse_reply
    >>> parse_reply("Question: Where is the depot?\\nAnswer: in Leeds")
    ('Where is the depot?', 'in Leeds')
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from ragtune.collection import Collection
from ragtune.models.generator import (
    GenerationConfig,
    Generator,
    batch_size_for,
    generate_texts,
)
from ragtune.synth.queries import QueryGenConfig, _truncate, select_chunks
from ragtune.synth.scope import write_scope
from ragtune.types import Scope

TEACHER_SYSTEM = ("You write reading-comprehension questions. For the passage, write one question a reader would ask "
                  "and its answer. The answer must be a short phrase copied word for word from the passage "
                  "(a name, number, date or short noun phrase, at most ten words), not a sentence of your own.")

# Worked examples the project wrote itself; they teach the format and the habit of copying spans.
FEW_SHOT = [
    ("The Marlow depot opened in 1987 and handles about 400 pallets a day. It closes for inventory every "
     "first Monday of the month.",
     "How many pallets does the Marlow depot handle a day?", "about 400 pallets"),
    ("Expense claims above 500 euros need a second approval from the finance controller before payment. "
     "Claims are paid with the next monthly salary.",
     "Who gives the second approval for large expense claims?", "the finance controller"),
    ("The tracer was injected intravenously, and imaging began 45 minutes later using a dual-head gamma "
     "camera.",
     "When did imaging begin after the tracer injection?", "45 minutes later"),
]


@dataclass
class AnswerSynthConfig:
    max_chunks: int | None = None  # a random sample of chunks; None = all
    min_chunk_words: int = 40  # too little text for a question with a span answer
    max_passage_tokens: int = 400
    max_answer_words: int = 12
    max_new_tokens: int = 64
    batch_size: int = 8  # prompts per forward pass (local model)
    seed: int = 0


@dataclass
class AnswerSynthReport:
    chunks: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)  # reason → count

    def to_dict(self) -> dict:
        return asdict(self)


def teacher_messages(passage: str) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": TEACHER_SYSTEM}]
    for context, question, answer in FEW_SHOT:
        messages += [{"role": "user", "content": f"Passage:\n{context}"},
                     {"role": "assistant", "content": f"Question: {question}\nAnswer: {answer}"}]
    return messages + [{"role": "user", "content": f"Passage:\n{passage}"}]


def parse_reply(reply: str) -> tuple[str, str]:
    """(question, answer) from ``Question: ...`` / ``Answer: ...`` lines; empty strings where missing."""
    question = re.search(r"question\s*:\s*(.+)", reply, flags=re.IGNORECASE)
    answer = re.search(r"answer\s*:\s*(.+)", reply, flags=re.IGNORECASE)
    return (question.group(1).strip() if question else "",
            answer.group(1).strip().strip('"“”').rstrip(".").strip() if answer else "")


def check_triple(question: str, answer: str, context: str, max_answer_words: int) -> tuple[int | None, str]:
    """(answer_start, "") when the pair is usable, else (None, the reason it is dropped)."""
    if not question or not question.endswith("?"):
        return None, "no question"
    if not answer:
        return None, "no answer"
    if len(answer.split()) > max_answer_words:
        return None, "answer too long"
    if answer.lower() in question.lower():
        return None, "answer in question"
    start = context.lower().find(answer.lower())
    if start < 0:
        return None, "answer not in passage"
    return start, ""


def synthesize_answers(collection: Collection, teacher: Generator, folder: str | Path,
                       config: AnswerSynthConfig | None = None,
                       on_progress: Callable[[str, int, int], None] | None = None) -> AnswerSynthReport:
    """Write ``folder/triples.jsonl`` (every attempt, kept or not, with its reason) and
    ``folder/squad.json`` (the kept triples); returns the counts over all attempts so far."""
    config = config or AnswerSynthConfig()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    chunks = select_chunks(collection.chunks(), QueryGenConfig(max_chunks=config.max_chunks, seed=config.seed,
                                                               min_chunk_words=config.min_chunk_words))
    path = folder / "triples.jsonl"
    done = {json.loads(line)["chunk_id"] for line in path.read_text().splitlines() if line.strip()} if path.exists() else set()
    todo = [c for c in chunks if c["chunk_id"] not in done]
    step = batch_size_for(teacher, config.batch_size)
    gen_cfg = GenerationConfig(max_new_tokens=config.max_new_tokens, repetition_penalty=1.1)
    with path.open("a") as out:
        for start in range(0, len(todo), step):
            part = todo[start:start + step]
            passages = [_truncate(c["text"], config.max_passage_tokens, teacher.count_tokens) for c in part]
            prompts = [teacher_messages(p) for p in passages]
            replies = generate_texts(teacher, prompts, gen_cfg)
            for chunk, passage, reply in zip(part, passages, replies):
                question, answer = parse_reply(reply)
                answer_start, reason = check_triple(question, answer, passage, config.max_answer_words)
                out.write(json.dumps({
                    "chunk_id": chunk["chunk_id"], "doc_id": chunk["doc_id"], "title": chunk.get("title", ""),
                    "context": passage, "question": question,
                    "answer": passage[answer_start:answer_start + len(answer)] if answer_start is not None else answer,
                    "answer_start": answer_start, "dropped": reason, "teacher": teacher.name}) + "\n")
            out.flush()  # a stopped run keeps every finished chunk
            if on_progress:
                on_progress("chunks", len(chunks) - len(todo) + start + len(part), len(chunks))
    acl_of = {c["chunk_id"]: c.get("acl", []) for c in collection.chunks()}
    return write_squad(path, folder / "squad.json", acl_of)


def write_squad(triples_path: Path, out_path: Path, acl_of: dict[str, list[str]] | None = None) -> AnswerSynthReport:
    """The kept triples as SQuAD v1.1 JSON, one article per document, one paragraph per chunk.
    With ``acl_of`` (chunk id → ACL tokens of the chunks this run may use), only those chunks'
    triples are written (an earlier run may have had a wider scope) and ``<stem>.scope.json``
    records their :class:`~ragtune.types.Scope`."""
    report = AnswerSynthReport()
    used: list[list[str]] = []
    articles: dict[str, dict] = {}
    for line in triples_path.read_text().splitlines():
        if not line.strip():
            continue
        t = json.loads(line)
        if acl_of is not None and t["chunk_id"] not in acl_of:
            continue
        report.chunks += 1
        if t["dropped"]:
            report.dropped[t["dropped"]] = report.dropped.get(t["dropped"], 0) + 1
            continue
        report.kept += 1
        if acl_of is not None:
            used.append(acl_of[t["chunk_id"]])
        article = articles.setdefault(t["doc_id"], {"title": t["title"] or t["doc_id"], "paragraphs": []})
        article["paragraphs"].append({"context": t["context"], "document_id": t["doc_id"], "qas": [
            {"id": t["chunk_id"], "question": t["question"],
             "answers": [{"text": t["answer"], "answer_start": t["answer_start"]}]}]})
    out_path.write_text(json.dumps({"version": "1.1", "source": "ragtune synth answers",
                                    "data": list(articles.values())}, indent=1))
    if acl_of is not None:
        write_scope(out_path, Scope.of(used))
    return report
