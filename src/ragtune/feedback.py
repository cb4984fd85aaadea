"""Feedback for the flywheel: every served answer is recorded, users rate or correct it, and the
export turns that into the exchange formats the fine-tuning and evaluation commands read.

``$RAGTUNE_HOME/feedback.sqlite`` holds two tables: ``answers`` (question, answer, the passages
it was given, citations, who asked, which model) and ``feedback`` (thumbs up/down, an optional
corrected answer, an optional "preferred over answer X" for A/B tests). Both are written in one
transaction per call with synchronous=FULL, so an acknowledged rating survives a crash.

Export (``ragtune feedback export``):
- ``squad.json``: SQuAD v2.0 rows for ``ragtune train generator``/``train reader``: a corrected
  answer, or an answer rated up, becomes a training example when its text is a verbatim span
  of a passage the answer was given (that passage is the context); a correction to "I don't
  know" becomes an unanswerable row.
- ``preferences.jsonl``: ``{prompt, context, chosen, rejected}`` pairs (DPO/ORPO shape) from
  corrections (correction over the original) and A/B choices (preferred over the other).
- ``kto.jsonl``: ``{prompt, context, completion, label}`` (trl's KTO shape): answers rated up
  (desirable) or down (undesirable); one rated both ways is left out.
- ``retrieval/<collection>/``: a BEIR folder of labelled retrieval queries: questions whose answer
  was rated up, the chunks it cited relevant, train = older and test = the newest 20% (what
  ``ragtune adapt --labelled`` reads: they judge the collection's own chunks).
- ``feedback.jsonl``: every rating joined with its answer, for evaluation and audit.

Every derived row names the answer and feedback it came from; repeats are written once.

Example:
    >>> import tempfile
    >>> store = FeedbackStore(tempfile.mkdtemp())
    >>> store.record_answer("a1", "hr", "ana", "How many days?", "25 days [1].", ["Staff get 25 days of leave."], [], "m")
    >>> _ = store.add("a1", "ana", rating="down", correction="25 days")
    >>> store.export(tempfile.mkdtemp())["squad"]
    1
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

from ragtune.answer.citations import strip_citations
from ragtune.config import ragtune_home
from ragtune.data.text import is_abstention
from ragtune.errors import InputError, NotFoundError

# A correction's text → {chunk id: {title, text, doc_id}} of the chunks holding it (empty: none
# found, or too many to say which); built by whoever can search the collection (ragtune.flywheel).
Locator = Callable[[str], dict[str, dict[str, Any]]]

RATINGS = ("up", "down")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
  id TEXT PRIMARY KEY, collection TEXT, user TEXT, question TEXT NOT NULL, answer TEXT NOT NULL,
  passages TEXT NOT NULL, citations TEXT NOT NULL, model TEXT, created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS feedback (
  id TEXT PRIMARY KEY, answer_id TEXT NOT NULL REFERENCES answers(id), user TEXT, rating TEXT,
  correction TEXT, preferred_over TEXT, comment TEXT, created REAL NOT NULL
);
"""


class FeedbackStore:
    def __init__(self, home: str | Path | None = None):
        path = ragtune_home(home) / "feedback.sqlite"
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def record_answer(self, answer_id: str, collection: str | None, user: str | None, question: str, answer: str,
                      passages: list[str], citations: list[dict], model: str | None) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             (answer_id, collection, user, question, answer, json.dumps(passages),
                              json.dumps(citations), model, time.time()))

    def answer(self, answer_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM answers WHERE id = ?", (answer_id,)).fetchone()
        return _answer(row) if row else None

    def add(self, answer_id: str, user: str | None, rating: str | None = None, correction: str | None = None,
            preferred_over: str | None = None, comment: str | None = None) -> str:
        """Store one piece of feedback on a recorded answer; returns its id. The caller checks
        that ``user`` may see the answer (the server answers 404 otherwise)."""
        if rating is not None and rating not in RATINGS:
            raise InputError(f"rating must be one of {', '.join(RATINGS)}, got {rating!r}")
        if rating is None and not correction and not preferred_over and not comment:
            raise InputError("feedback needs at least one of rating, correction, preferred_over, comment")
        if self.answer(answer_id) is None:
            raise NotFoundError(f"no recorded answer {answer_id!r}")
        if preferred_over is not None:
            other = self.answer(preferred_over)
            if other is None or preferred_over == answer_id:
                raise NotFoundError(f"no other recorded answer {preferred_over!r} to prefer this one over")
        fid = uuid.uuid4().hex
        with self._lock:
            self._db.execute("INSERT INTO feedback VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                             (fid, answer_id, user, rating, correction, preferred_over, comment, time.time()))
        return fid

    def rows(self, collection: str | None = None, since: float | None = None) -> list[dict[str, Any]]:
        """Every feedback row joined with its answer, oldest first (of one collection's answers,
        and given after ``since``, when asked)."""
        where: list[str] = []
        args: list[Any] = []
        if collection is not None:
            where.append("a.collection = ?")
            args.append(collection)
        if since is not None:
            where.append("f.created > ?")
            args.append(since)
        sql = ("SELECT f.id, f.rating, f.correction, f.preferred_over, f.comment, f.user, f.created, a.* "
               "FROM feedback f JOIN answers a ON a.id = f.answer_id"
               + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY f.created")
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        out = []
        for r in rows:
            fid, rating, correction, preferred, comment, fuser, created = r[:7]
            out.append({"id": fid, "rating": rating, "correction": correction, "preferred_over": preferred,
                        "comment": comment, "user": fuser, "created": created, "answer": _answer(r[7:])})
        return out

    def export(self, out_dir: str | Path, test_fraction: float = 0.2, collection: str | None = None,
               locate: Locator | None = None) -> dict[str, Any]:
        """Write squad.json, preferences.jsonl, kto.jsonl, feedback.jsonl and, per collection, the
        labelled retrieval queries (``retrieval/<collection>/``, BEIR, split by time with the newest
        ``test_fraction`` held out); returns how many rows each got. ``collection``: that
        collection's answers only (what its flywheel trains on). ``locate``: finds the chunks that
        hold a correction's text, so a corrected answer labels a query too (:func:`labelled_queries`)."""
        from ragtune.data.squad import QAExample, save_squad

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        rows = self.rows(collection)
        examples: list[QAExample] = []
        pairs: list[dict[str, Any]] = []
        for row in rows:
            a = row["answer"]
            target = row["correction"] or (a["answer"] if row["rating"] == "up" else None)
            if target is not None:
                ex = _squad_example(row["id"], a, strip_citations(target))
                if ex is not None:
                    examples.append(ex)
            if row["correction"] and strip_citations(row["correction"]) != strip_citations(a["answer"]):
                pairs.append(_pair(a, row["correction"], a["answer"], "correction"))
            if row["preferred_over"]:
                other = self.answer(row["preferred_over"])
                if other is not None:
                    pairs.append(_pair(a, a["answer"], other["answer"], "a/b"))
        save_squad(examples, out / "squad.json")
        pairs = _unique(pairs, ("prompt", "chosen", "rejected"))
        _write_jsonl(out / "preferences.jsonl", pairs)
        _write_jsonl(out / "feedback.jsonl", rows)
        kto = kto_rows(rows)
        _write_jsonl(out / "kto.jsonl", kto)
        labelled = {c: write_labelled_queries(rs, out / "retrieval" / c, test_fraction, locate)
                    for c, rs in _by_collection(rows).items()}
        return {"feedback": len(rows), "squad": len(examples), "preferences": len(pairs), "kto": len(kto),
                "labelled_queries": {c: n for c, n in labelled.items() if n["train"] + n["test"]}}


def _answer(row: tuple) -> dict[str, Any]:
    aid, collection, user, question, answer, passages, citations, model, created = row
    return {"id": aid, "collection": collection, "user": user, "question": question, "answer": answer,
            "passages": json.loads(passages), "citations": json.loads(citations), "model": model, "created": created}


def _squad_example(fid: str, answer: dict[str, Any], target: str):
    from ragtune.data.squad import QAExample

    passages = answer["passages"]
    context = "\n\n".join(passages)
    article = f"feedback-{answer['collection'] or 'chat'}"
    if is_abstention(target):
        return QAExample(fid, answer["question"], context, [], [], article_id=article) if passages else None
    for passage in passages:  # the shortest grounding: the passage that holds the span
        start = passage.find(target)
        if target and start >= 0:
            return QAExample(fid, answer["question"], passage, [target], [start], article_id=article)
    return None  # not a verbatim span of what the model saw: no extractive training row


def _pair(answer: dict[str, Any], chosen: str, rejected: str, source: str) -> dict[str, Any]:
    return {"prompt": answer["question"], "context": answer["passages"], "chosen": chosen, "rejected": rejected,
            "source": source, "answer_id": answer["id"]}


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def _unique(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> list[dict[str, Any]]:
    """Rows with the first of each set of equal ``keys`` kept (rows come oldest first)."""
    seen: set[tuple] = set()
    out = []
    for r in rows:
        key = tuple(strip_citations(r[k]).strip().lower() if isinstance(r[k], str) else json.dumps(r[k]) for k in keys)
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def _norm(question: str) -> str:
    return " ".join(question.lower().split()).rstrip("?!. ")


def kto_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """trl's unpaired preference format (``prompt``, ``completion``, ``label``): an answer rated up
    is a desirable completion, one rated down an undesirable one. The same answer to the same
    question rated both ways (two users disagree) is left out rather than guessed; each distinct
    (question, answer) counts once, with the first rating's provenance."""
    groups: dict[tuple[str, str], tuple[set[bool], dict[str, Any]]] = {}
    for r in rows:
        if r["rating"] in RATINGS:
            a = r["answer"]
            key = (_norm(a["question"]), " ".join(strip_citations(a["answer"]).split()).lower())
            labels, _ = groups.setdefault(key, (set(), r))
            labels.add(r["rating"] == "up")
    out = []
    for labels, r in groups.values():
        if len(labels) == 1:
            a = r["answer"]
            out.append({"prompt": a["question"], "context": a["passages"], "completion": a["answer"],
                        "label": next(iter(labels)), "answer_id": a["id"], "feedback_id": r["id"],
                        "created": r["created"], "collection": a["collection"]})
    return out


def _by_collection(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r["answer"]["collection"]:
            out.setdefault(r["answer"]["collection"], []).append(r)
    return out


def labelled_queries(rows: list[dict[str, Any]], locate: Locator | None = None) -> list[dict[str, Any]]:
    """Questions whose answer was rated up (and never down) with the chunks it cited as relevant:
    a user confirmed those passages answer the question. With ``locate`` (a corrected answer's
    text → the chunks that hold it), a correction labels its question too, with the chunks that
    hold what the user said the answer is: the questions the system got wrong, the ones worth
    learning from. One query per distinct question (its judgements merged), dated by its first
    confirmation; oldest first."""
    down = {r["answer"]["id"] for r in rows if r["rating"] == "down"}
    by_question: dict[str, dict[str, Any]] = {}

    def entry(r: dict[str, Any]) -> dict[str, Any]:
        return by_question.setdefault(_norm(r["answer"]["question"]), {
            "text": r["answer"]["question"], "created": r["created"], "chunks": {}, "answer_ids": [],
            "feedback_ids": [], "sources": []})

    for r in rows:
        a = r["answer"]
        if locate is not None and r["correction"] and not is_abstention(r["correction"]):
            found = locate(r["correction"])
            if found:
                q = entry(r)
                for cid, c in found.items():
                    q["chunks"].setdefault(cid, c)
                q["answer_ids"].append(a["id"])
                q["feedback_ids"].append(r["id"])
                q["sources"].append("correction")
            continue
        if r["rating"] != "up" or a["id"] in down or not a["citations"]:
            continue
        q = entry(r)
        for c in a["citations"]:
            n = int(c.get("number", 0))
            if c.get("chunk_id") and 1 <= n <= len(a["passages"]):
                q["chunks"].setdefault(c["chunk_id"], {"title": c.get("title") or "", "text": a["passages"][n - 1],
                                                       "doc_id": c.get("doc_id", "")})
        q["answer_ids"].append(a["id"])
        q["feedback_ids"].append(r["id"])
        q["sources"].append("thumbs-up")
    return sorted((q for q in by_question.values() if q["chunks"]), key=lambda q: q["created"])


def write_labelled_queries(rows: list[dict[str, Any]], folder: Path, test_fraction: float = 0.2,
                           locate: Locator | None = None) -> dict[str, int]:
    """:func:`labelled_queries` as a BEIR folder on chunk ids (what ``ragtune adapt --labelled``
    and ``ragtune eval`` read): train = the older queries, test = the newest ``test_fraction``
    (train on the past, judge on what came after). Each query keeps its provenance."""
    from ragtune.data.beir import write_corpus, write_qrels, write_queries

    if not 0 <= test_fraction < 1:
        raise InputError(f"test_fraction must be in [0, 1), got {test_fraction}")
    queries = labelled_queries(rows, locate)
    if not queries:
        return {"train": 0, "test": 0}
    n_test = round(len(queries) * test_fraction)
    cut = len(queries) - n_test
    ids = [f"fb-{q['answer_ids'][0]}" for q in queries]
    corpus: dict[str, dict[str, Any]] = {}
    for q in queries:
        for cid, c in q["chunks"].items():
            corpus.setdefault(cid, {"_id": cid, "title": c["title"], "text": c["text"], "doc_id": c["doc_id"]})
    write_corpus(folder, list(corpus.values()))
    write_queries(folder, [{"_id": i, "text": q["text"], "metadata": {
        "source": "feedback", "created": q["created"], "answer_ids": q["answer_ids"], "feedback_ids": q["feedback_ids"],
        "sources": q["sources"],
        "split": "train" if k < cut else "test"}} for k, (i, q) in enumerate(zip(ids, queries))])
    write_qrels(folder, "train", [(i, cid, 1) for i, q in list(zip(ids, queries))[:cut] for cid in q["chunks"]])
    write_qrels(folder, "test", [(i, cid, 1) for i, q in list(zip(ids, queries))[cut:] for cid in q["chunks"]])
    return {"train": cut, "test": n_test}
