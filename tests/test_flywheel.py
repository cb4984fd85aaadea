"""The flywheel (ragtune.flywheel) and the feedback-aware gate (ragtune.adapt): feedback becomes
labelled queries (confirmed answers and located corrections), joins the training set once, the
gate says which held-out set decided and refuses when the sets disagree, runs are due only when
enough changed, and every run is a history record the CLI shows."""

from __future__ import annotations

import json
import time

import pytest

from ragtune.adapt import AdaptConfig, add_feedback_queries, gate_verdict
from ragtune.data.beir import load_beir, read_queries
from ragtune.errors import InputError
from ragtune.feedback import FeedbackStore
from ragtune.flywheel import FlywheelConfig, History, correction_locator, due, run_flywheel
from ragtune.ingest.sync import ingest
from ragtune.types import Acl

TOPICS = ["glacier melt in the Alps", "sourdough starter feeding", "tidal power in Brittany", "bee colony collapse",
          "copper mining in Chile", "violin varnish recipes", "monsoon rainfall in Kerala", "desert locust swarms",
          "lighthouse keeping in Norway", "coral bleaching in Fiji", "olive harvest in Crete", "permafrost thaw in Yakutia"]


def _signal(delta: float, p: float, queries: int = 30) -> dict:
    ci = [delta - 0.02, delta + 0.02] if p < 0.05 else [delta - 0.05, delta + 0.05]
    return {"queries": queries, "delta": delta, "ci": ci, "p_value": p, "promote": delta > 0 and p < 0.05}


def test_gate_hears_every_held_out_set_and_says_which_decided():
    cfg = AdaptConfig(min_feedback_queries=20)
    better, worse, flat = _signal(0.05, 0.01), _signal(-0.04, 0.01), _signal(0.01, 0.6)
    v = gate_verdict({"synthetic": better, "feedback": flat}, cfg)
    assert v["decided_by"] == "feedback" and not v["promote"]  # real questions outrank synthetic ones
    v = gate_verdict({"synthetic": better, "feedback": _signal(0.01, 0.6, queries=5)}, cfg)
    assert v["decided_by"] == "synthetic" and v["promote"]  # too few feedback questions to decide
    v = gate_verdict({"synthetic": better, "feedback": worse}, AdaptConfig(min_feedback_queries=100))
    assert not v["promote"] and "signals disagree" in v["why"] and "feedback" in v["why"]
    v = gate_verdict({"labelled": better, "feedback": flat, "synthetic": flat}, cfg)
    assert v["decided_by"] == "labelled" and v["promote"] and [s["name"] for s in v["signals"]][0] == "labelled"
    v = gate_verdict({"feedback": _signal(0.2, 0.001, queries=8)}, cfg)
    assert not v["promote"] and "too few" in v["why"] and "8 feedback" in v["why"]
    with pytest.raises(InputError, match="no held-out questions"):
        gate_verdict({}, cfg)


@pytest.fixture
def topics(tmp_path, make_tiny_collection):
    path = tmp_path / "docs.jsonl"
    path.write_text("\n".join(json.dumps({"id": f"t{i}", "title": t.title(), "text": f"This page is about {t}. "
                                          f"The key fact about {t} is number {i * 7}."}) for i, t in enumerate(TOPICS)))
    c = make_tiny_collection("topics")
    ingest(c, path, Acl(public=True))
    return c


def _feedback(home, coll, n: int, tag: str = "a") -> FeedbackStore:
    """n questions: even ones answered right and rated up, odd ones rated down and corrected."""
    chunks = {c["doc_id"]: c for c in coll.chunks()}
    store = FeedbackStore(home)
    for i in range(n):
        c = chunks[f"t{i % len(TOPICS)}"]
        cite = [{"number": 1, "doc_id": c["doc_id"], "chunk_id": c["chunk_id"], "title": c["title"], "source": ""}]
        store.record_answer(f"{tag}{i}", coll.name, "ana", f"What is the key fact about {TOPICS[i % len(TOPICS)]}? ({i})",
                            "something", [c["text"]], cite, "m")
        if i % 2 == 0:
            store.add(f"{tag}{i}", "ana", rating="up")
        else:
            store.add(f"{tag}{i}", "ana", rating="down", correction=f"number {(i % len(TOPICS)) * 7}.")
        time.sleep(0.002)
    return store


def test_corrections_are_located_and_feedback_joins_training_once(topics, home, tmp_path):
    store = _feedback(home, topics, 12)
    plain = store.export(tmp_path / "plain", 0.25, topics.name)
    located = store.export(tmp_path / "fb", 0.25, topics.name, locate=correction_locator(topics))
    store.close()
    # Without a locator only the six thumbs-up label a query; with it the corrections do too.
    assert sum(plain["labelled_queries"]["topics"].values()) == 6
    assert located["labelled_queries"]["topics"] == {"train": 9, "test": 3}
    fb = tmp_path / "fb" / "retrieval" / "topics"
    train = load_beir(fb, "train")
    by_text = {t: q for q, t in train.queries.items()}
    corrected = by_text["What is the key fact about sourdough starter feeding? (1)"]
    assert {cid.split("#")[0] for cid in train.qrels[corrected]} == {"t1"}  # the chunk holding "number 7."
    assert correction_locator(topics)("number") == {}  # too short to be specific: labels nothing

    folder = tmp_path / "synth"
    first = add_feedback_queries(topics, folder, fb)
    again = add_feedback_queries(topics, folder, fb)
    assert first == again and first["feedback_queries"] == 9 and first["dropped_judgements"] == 0
    assert len(read_queries(folder)) == 9  # re-running adds nothing twice
    assert set(load_beir(folder, "train-feedback").queries) == set(train.queries)
    meta = {r["_id"]: r["metadata"] for r in read_queries(folder)}
    assert meta[corrected]["type"] == "feedback" and meta[corrected]["provenance"]["sources"] == ["correction"]


def test_a_run_is_due_only_when_enough_changed_and_each_run_is_recorded(topics, home):
    cfg = FlywheelConfig(min_new_feedback=10, min_new_documents=50, min_interval_minutes=30, tasks=("tune", "embedder"),
                         synthetic=False)
    store = _feedback(home, topics, 6)
    assert not due(topics, store, cfg)["due"]
    assert run_flywheel(topics, home, cfg)["ran"] is False and History(topics).runs() == []
    store.close()
    store = _feedback(home, topics, 12, tag="b")  # the same questions asked again: 12 more feedback rows
    d = due(topics, store, cfg)
    store.close()
    assert d["due"] and d["new_feedback"] == 18 and "18 new feedback" in d["reasons"][0]

    record = run_flywheel(topics, home, cfg)
    assert record["ran"] and History(topics).runs()[-1]["run"] == record["run"]
    tune = record["tasks"]["tune"]
    assert tune["ran"] and tune["questions"] >= 10 and tune["promoted"] == bool(tune["chosen"])
    emb = record["tasks"]["embedder"]
    assert emb["ran"] and emb["decided_by"] == "feedback" and emb["signals"][0]["name"] == "feedback"
    assert emb["promoted"] is False and "need 20" in emb["why"]  # a handful of newer questions cannot decide
    assert record["index_after"] == record["index_before"] == topics.live_version
    assert (topics.dir / "flywheel" / record["run"] / "report.md").read_text().startswith("# Flywheel run")
    # Straight after a run nothing is due, whatever came in: the minimum interval holds.
    store = _feedback(home, topics, 12, tag="c")
    d = due(topics, store, cfg)
    store.close()
    assert not d["due"] and "min ago" in d["why_not"]


def test_the_server_worker_turns_the_flywheel_on_its_own_handle_and_serves_what_it_promoted(topics, home):
    from ragtune.serve.state import ServeConfig, ServerState
    from ragtune.types import Principal

    _feedback(home, topics, 12).close()
    topics.close()  # the server is the store's one owner
    srv = ServerState(home, ServeConfig(sync_sources=False, flywheel={"tasks": ["tune", "embedder"], "synthetic": False,
                                                                      "min_new_feedback": 5}))
    try:
        record = srv.run_flywheel("topics")
        assert record["ran"] and record["trigger"]["new_feedback"] == 12
        h = srv.handle("topics")
        assert h.collection.pipeline.query.model_dump() == (
            record["query_before"] if not record["tasks"]["tune"]["promoted"]
            else {**record["query_before"], **{k.split(".", 1)[1]: v for k, v in record["tasks"]["tune"]["chosen"].items()}})
        hits = srv.searcher(h).search("key fact about tidal power in Brittany", Principal(), k=3)
        assert hits and History(h.collection).runs()[-1]["run"] == record["run"]
        assert srv.run_flywheel("topics")["ran"] is False  # nothing new since: not due
    finally:
        srv.close()


@pytest.mark.slow
def test_the_reader_task_trains_over_retrieved_chunks_and_is_judged_as_served(topics, home):
    from ragtune.train.reader import ReaderTrainConfig

    store = _feedback(home, topics, 24)
    store.close()
    cfg = FlywheelConfig(tasks=("reader",), synthetic=False, reader_min_examples=8, test_fraction=0.25,
                         reader=ReaderTrainConfig(max_steps=2, batch_size=4), reader_retrieved=3)
    record = run_flywheel(topics, home, cfg, force=True)
    reader = record["tasks"]["reader"]
    assert reader["ran"], reader
    # each corrected question also over its top-3 chunks: the one holding "number N." labelled, 2 "no answer"
    assert reader["retrieved_examples"] >= 2 * reader["train_questions"]
    assert reader["gate"]["read"] == "served" and reader["gate"]["questions"] == reader["held_out_questions"]
    assert topics.pipeline.reader.model == (reader["path"] if reader["promoted"] else None)


@pytest.mark.slow
def test_the_preferences_task_trains_dpo_on_the_feedback_pairs_and_serves_only_what_its_gate_passed(
        topics, home, local_generator):
    from ragtune.models.adapters import AdapterRegistry
    from ragtune.train.preference import PreferenceTrainConfig

    topics.pipeline.generator.model = local_generator.path
    topics.save_pipeline()
    store = _feedback(home, topics, 24)  # 12 corrections: "number N." chosen over "something"
    store.close()
    cfg = FlywheelConfig(tasks=("preferences",), synthetic=False, preference_min_pairs=8, test_fraction=0.25,
                         preferences=PreferenceTrainConfig(max_steps=2, batch_size=4, max_length=256))
    assert "preferences" not in FlywheelConfig().tasks  # opt-in: an LLM's training
    record = run_flywheel(topics, home, cfg, force=True)
    task = record["tasks"]["preferences"]
    assert task["ran"] and (task["train_pairs"], task["held_out_pairs"]) == (9, 3)
    # three newer pairs cannot show a significant gain: refused, kept on disk, not served
    assert task["promoted"] is False and task["gate"]["pairs"] == 3 and "not better" in task["why"]
    registry = AdapterRegistry(home)
    assert registry.exists(task["adapter"]) and registry.refusal(task["adapter"])
    with pytest.raises(InputError, match="refused by its gate"):
        registry.resolve(task["adapter"])
    report = (topics.dir / "flywheel" / record["run"] / "report.md").read_text()
    assert "preferences: refused" in report and "held-out preference accuracy" in report
