"""Feedback → data (ragtune.feedback): what users rated becomes labelled retrieval queries split by
time, KTO rows and deduplicated preference pairs, each with its provenance; nothing is guessed."""

from __future__ import annotations

import json
import time

from ragtune.data.beir import load_beir
from ragtune.feedback import FeedbackStore


def _cite(n: int, chunk: str) -> dict:
    return {"number": n, "doc_id": chunk.split("#")[0], "chunk_id": chunk, "title": "Handbook", "source": "hb.md"}


def _answer(store: FeedbackStore, aid: str, question: str, text: str, chunks: list[str], collection: str = "hr") -> None:
    passages = [f"passage of {c}" for c in chunks]
    store.record_answer(aid, collection, "ana", question, text, passages, [_cite(i + 1, c) for i, c in enumerate(chunks)], "m")


def test_export_turns_ratings_into_time_split_queries_kto_rows_and_unique_pairs(tmp_path):
    store = FeedbackStore(tmp_path / "home")
    for i in range(10):  # ten questions confirmed over time, oldest first
        _answer(store, f"a{i}", f"What is policy {i}?", f"Policy {i} says X [1].", [f"d{i}#0", f"d{i}#1"])
        store.add(f"a{i}", "ana", rating="up")
        time.sleep(0.002)
    # The same question asked again and confirmed: one query, its judgements merged.
    _answer(store, "a0-again", "what is policy 0", "Policy 0 says X [1].", ["d0#2"])
    store.add("a0-again", "bob", rating="up")
    # Rated up by one user and down by another: not a labelled query, not a KTO row.
    _answer(store, "split", "Who approves travel?", "Your manager [1].", ["t#0"])
    store.add("split", "ana", rating="up")
    store.add("split", "bob", rating="down")
    # Rated down: a negative KTO row, never a labelled query.
    _answer(store, "bad", "How long is parental leave?", "Two days [1].", ["p#0"])
    store.add("bad", "ana", rating="down", correction="Sixteen weeks")
    store.add("bad", "bob", rating="down", correction="sixteen weeks")  # the same pair twice: kept once
    # Another collection gets its own folder; an answer without citations labels nothing.
    _answer(store, "it", "How do I reset my password?", "Use the portal [1].", ["it#0"], collection="it")
    store.add("it", "cy", rating="up")
    _answer(store, "nocite", "Is the office open?", "Yes.", [])
    store.add("nocite", "ana", rating="up")

    out = tmp_path / "export"
    counts = store.export(out, test_fraction=0.2)
    store.close()
    assert counts["labelled_queries"] == {"hr": {"train": 8, "test": 2}, "it": {"train": 1, "test": 0}}

    hr = tmp_path / "export" / "retrieval" / "hr"
    train, test = load_beir(hr, "train"), load_beir(hr, "test")
    assert set(test.queries.values()) == {"What is policy 8?", "What is policy 9?"}  # the newest are held out
    assert "What is policy 0?" in train.queries.values() and not set(train.queries) & set(test.queries)
    q0 = next(q for q, t in train.queries.items() if t == "What is policy 0?")
    assert set(train.qrels[q0]) == {"d0#0", "d0#1", "d0#2"}
    assert train.corpus["d0#2"]["text"] == "passage of d0#2"
    all_queries = [t for ds in (train, test) for t in ds.queries.values()]
    assert "Who approves travel?" not in all_queries and "How long is parental leave?" not in all_queries
    meta = {json.loads(ln)["_id"]: json.loads(ln)["metadata"] for ln in (hr / "queries.jsonl").read_text().splitlines()}
    assert meta[q0]["source"] == "feedback" and meta[q0]["answer_ids"] == ["a0", "a0-again"]

    kto = [json.loads(ln) for ln in (out / "kto.jsonl").read_text().splitlines()]
    labels = {r["prompt"]: r["label"] for r in kto}
    assert labels["How long is parental leave?"] is False and labels["What is policy 3?"] is True
    assert "Who approves travel?" not in labels
    assert all(r["answer_id"] and r["feedback_id"] for r in kto)

    pairs = [json.loads(ln) for ln in (out / "preferences.jsonl").read_text().splitlines()]
    assert [(p["prompt"], p["chosen"]) for p in pairs] == [("How long is parental leave?", "Sixteen weeks")]


def test_a_bad_test_fraction_is_named(tmp_path):
    import pytest

    from ragtune.errors import InputError

    store = FeedbackStore(tmp_path / "home")
    _answer(store, "a", "Q?", "A [1].", ["c#0"])
    store.add("a", "ana", rating="up")
    with pytest.raises(InputError, match="test_fraction"):
        store.export(tmp_path / "out", test_fraction=1.5)
    store.close()
