"""SQuAD-format QA files (v1.1 and v2.0 with ``is_impossible``; COVID-QA uses the same format),
and the importer that turns one into a retrieval task.

Example:
    >>> from ragtune.data.squad import load_squad
    >>> qa = load_squad("../shared/data/squad/dev-v1.1.json")  # doctest: +SKIP
    >>> len(qa), qa[0].answers[0]  # doctest: +SKIP
    (10570, 'Denver Broncos')
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ragtune.errors import InputError


@dataclass
class QAExample:
    id: str
    question: str
    context: str
    answers: list[str]  # empty for an unanswerable question
    answer_starts: list[int] = field(default_factory=list)
    title: str = ""
    article_id: str = ""  # the article (document) the context comes from
    paragraph_index: int = 0

    @property
    def is_impossible(self) -> bool:
        return not self.answers


def load_squad(path: str | Path) -> list[QAExample]:
    path = Path(path)
    try:
        data = json.loads(path.read_text())["data"]
    except (OSError, ValueError, KeyError) as e:
        raise InputError(f"{path}: not a SQuAD-format file (need a top-level 'data' list): {e}") from e
    out = []
    # Paragraphs are numbered per article id over the whole file, one number per distinct context:
    # a file may list one article in several entries, and `<article>-p<n>` must name one context.
    numbers: dict[tuple[str, str], int] = {}
    per_article: dict[str, int] = {}
    for a, article in enumerate(data):
        title = article.get("title", "")
        for para in article["paragraphs"]:
            article_id = str(para.get("document_id", article.get("document_id", title or a)))
            if (article_id, para["context"]) not in numbers:
                numbers[(article_id, para["context"])] = per_article.get(article_id, 0)
                per_article[article_id] = per_article.get(article_id, 0) + 1
            p = numbers[(article_id, para["context"])]
            for qa in para["qas"]:
                impossible = bool(qa.get("is_impossible", False))
                answers = [] if impossible else qa.get("answers", [])
                out.append(QAExample(
                    id=str(qa["id"]),
                    question=qa["question"],
                    context=para["context"],
                    answers=[x["text"] for x in answers],
                    answer_starts=[int(x["answer_start"]) for x in answers],
                    title=title,
                    article_id=article_id,
                    paragraph_index=p,
                ))
    return out


def save_squad(examples: list[QAExample], path: str | Path) -> Path:
    """Write examples as SQuAD v2.0 JSON (``is_impossible`` for those without an answer), one
    article per ``article_id``, one paragraph per distinct context; :func:`load_squad` reads it back.

    >>> import tempfile, pathlib
    >>> ex = QAExample("q1", "Who?", "Ana wrote it.", ["Ana"], [0], article_id="a")
    >>> p = save_squad([ex], pathlib.Path(tempfile.mkdtemp()) / "s.json")
    >>> [(e.question, e.answers, e.answer_starts) for e in load_squad(p)]
    [('Who?', ['Ana'], [0])]
    """
    articles: dict[str, dict] = {}
    paragraphs: dict[tuple[str, str], dict] = {}
    for ex in examples:
        article = articles.setdefault(ex.article_id, {"title": ex.title or ex.article_id, "document_id": ex.article_id,
                                                      "paragraphs": []})
        key = (ex.article_id, ex.context)
        if key not in paragraphs:
            paragraphs[key] = {"context": ex.context, "qas": []}
            article["paragraphs"].append(paragraphs[key])
        paragraphs[key]["qas"].append({
            "id": ex.id, "question": ex.question, "is_impossible": ex.is_impossible,
            "answers": [{"text": t, "answer_start": s} for t, s in zip(ex.answers, ex.answer_starts)],
        })
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"version": "v2.0", "data": list(articles.values())}, indent=1))
    return out


def squad_to_beir(examples: list[QAExample], out_dir: str | Path, chunker) -> dict[str, int]:
    """Write a BEIR folder where the corpus is the chunks of the contexts and a question's
    relevant documents are the chunk(s) holding its answer span (fully, else overlapping it).
    Unanswerable questions have no relevant chunk and are left out of the IR task.
    ``chunker`` is anything with ``chunk(Document) -> list[Chunk]`` (ingest's ``Chunker``)."""
    from ragtune.data.beir import (
        corpus_record,
        query_record,
        write_corpus,
        write_qrels,
        write_queries,
    )
    from ragtune.types import Document

    chunks_of: dict[tuple[str, int], list] = {}
    corpus, queries, qrels = [], [], []
    for ex in examples:
        key = (ex.article_id, ex.paragraph_index)
        if key not in chunks_of:
            base = f"{ex.article_id}-p{ex.paragraph_index}"
            chunks = chunker.chunk(Document(id=base, text=ex.context, title=ex.title))
            chunks_of[key] = chunks
            corpus += [corpus_record(c.id, c.text, ex.title, {"article_id": ex.article_id, "start": c.start})
                       for c in chunks]
        relevant = set()
        for text, start in zip(ex.answers, ex.answer_starts):
            end = start + len(text)
            inside = [c.id for c in chunks_of[key] if c.start <= start and end <= c.end]
            relevant |= set(inside or [c.id for c in chunks_of[key] if c.start < end and start < c.end])
        if relevant:
            queries.append(query_record(ex.id, ex.question))
            qrels += [(ex.id, d, 1) for d in sorted(relevant)]
    write_corpus(out_dir, corpus)
    write_queries(out_dir, queries)
    n_qrels = write_qrels(out_dir, "test", qrels)
    return {"documents": len(corpus), "queries": len(queries), "qrels": n_qrels}


def sample(examples: list[QAExample], limit: int | None, seed: int = 0) -> list[QAExample]:
    """A reproducible random sample (all of them when ``limit`` is None or large enough).

    >>> exs = [QAExample(str(i), "q", "c", ["a"]) for i in range(10)]
    >>> [e.id for e in sample(exs, 3)] == [e.id for e in sample(exs, 3)], len(sample(exs, None))
    (True, 10)
    """
    import random

    if limit is None or limit >= len(examples):
        return list(examples)
    return sorted(random.Random(seed).sample(examples, limit), key=lambda ex: ex.id)


def split_by_article(examples: list[QAExample], eval_fraction: float, seed: int = 0) -> tuple[list[QAExample], list[QAExample]]:
    """(train, held-out) with every question of an article on one side only: questions about
    one document share its wording, so a question-level split would leak the answers.

    >>> exs = [QAExample(str(i), "q", "c", ["a"], [0], article_id=f"art{i % 10}") for i in range(100)]
    >>> train, held = split_by_article(exs, 0.2)
    >>> len(held), {e.article_id for e in train} & {e.article_id for e in held}
    (20, set())
    """
    import random

    articles = sorted({ex.article_id for ex in examples})
    if len(articles) < 2:
        raise InputError("a by-article split needs questions from at least two articles")
    random.Random(seed).shuffle(articles)
    n_held = min(len(articles) - 1, max(1, round(eval_fraction * len(articles))))
    held = set(articles[:n_held])
    return [ex for ex in examples if ex.article_id not in held], [ex for ex in examples if ex.article_id in held]
