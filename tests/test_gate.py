"""The promotion gate (ragtune.gate, issue 25): probes the training did not shape decide over the
training writer's own questions, a gain needs its confidence interval above 0 and a minimum size,
a teacher judges the pooled results of both versions, and signals that disagree refuse."""

from __future__ import annotations

import json

import pytest

from ragtune.evaluate.ir import per_query
from ragtune.evaluate.judged import grade, judged_qrels
from ragtune.gate import GateSettings, gate_verdict
from ragtune.synth.probes import probe_chunks, probe_kinds


def _s(delta: float, lo: float, hi: float, p: float, queries: int = 40) -> dict:
    return {"queries": queries, "delta": delta, "ci": [lo, hi], "p_value": p}


GAIN = _s(0.03, 0.01, 0.05, 0.004)
FLAT = _s(0.002, -0.01, 0.014, 0.7)
DOWN = _s(-0.004, -0.012, 0.004, 0.3)
LOSS = _s(-0.03, -0.05, -0.01, 0.003)


def test_probes_decide_over_the_training_writers_questions():
    """The issue's case: synthetic dev says +0.03 (p 0.004), probes see nothing -> refused; the
    old rule (synthetic Δ > 0 and p < 0.05) would have promoted."""
    v = gate_verdict({"synthetic": GAIN, "probes": FLAT}, GateSettings())
    assert v["decided_by"] == "probes" and not v["promote"] and "not better on probes" in v["why"]
    assert [r["name"] for r in v["signals"]] == ["probes", "synthetic"]
    assert {r["name"]: r["verdict"] for r in v["signals"]} == {"probes": "no difference", "synthetic": "better"}
    v = gate_verdict({"synthetic": GAIN, "probes": GAIN}, GateSettings())
    assert v["promote"] and v["decided_by"] == "probes"


def test_too_few_probes_are_heard_and_can_still_refuse():
    few = dict(DOWN, queries=8)
    v = gate_verdict({"synthetic": GAIN, "probes": few}, GateSettings(min_probe_queries=20))
    assert v["decided_by"] == "synthetic" and not v["promote"] and "signals disagree" in v["why"]
    v = gate_verdict({"synthetic": GAIN, "probes": dict(GAIN, queries=8)}, GateSettings(min_probe_queries=20))
    assert v["decided_by"] == "synthetic" and v["promote"]


def test_a_gain_needs_its_interval_above_zero_and_the_minimum_effect():
    settings = GateSettings(min_effect=0.01)
    # p < alpha but the bootstrap interval touches 0: not enough.
    assert not gate_verdict({"probes": _s(0.02, -0.001, 0.04, 0.04)}, settings)["promote"]
    small = gate_verdict({"probes": _s(0.006, 0.002, 0.01, 0.01)}, settings)
    assert not small["promote"] and "below the minimum effect 0.01" in small["why"]
    assert gate_verdict({"probes": _s(0.02, 0.005, 0.04, 0.01)}, settings)["promote"]


def test_the_minimum_effect_is_scaled_on_a_teachers_compressed_grades():
    """A weak teacher's grades compress a Δ (about 4x for a 250-step judge on the design corpora): a
    +0.003 gain on teacher-judged probes clears the scaled bar (0.005 × 0.25), the same +0.003 on
    source-chunk qrels does not; the default scale (0.65, a 1500-step judge's) asks more of it."""
    weak_judge = GateSettings(teacher_scale=0.25)
    small = _s(0.003, 0.001, 0.005, 0.002, queries=250)
    judged = gate_verdict({"probes": dict(small, judged_by="teacher")}, weak_judge)
    assert judged["promote"] and judged["signals"][0]["min_effect"] == pytest.approx(0.00125)
    plain = gate_verdict({"probes": small}, weak_judge)
    assert not plain["promote"] and "below the minimum effect 0.005)" in plain["why"]
    tiny = gate_verdict({"probes": _s(0.001, 0.0002, 0.002, 0.01, queries=250) | {"judged_by": "teacher"}},
                        weak_judge)
    assert not tiny["promote"] and "0.00125 = 0.005 × 0.25 on teacher grades" in tiny["why"]
    default = gate_verdict({"probes": dict(small, judged_by="teacher")}, GateSettings())
    assert not default["promote"] and "0.00325 = 0.005 × 0.65 on teacher grades" in default["why"]
    assert not gate_verdict({"probes": dict(small, judged_by="teacher")}, GateSettings(teacher_scale=1.0))["promote"]


def test_real_signals_decide_and_any_significant_loss_refuses():
    v = gate_verdict({"labelled": GAIN, "probes": FLAT, "synthetic": GAIN}, GateSettings())
    assert v["decided_by"] == "labelled" and v["promote"]
    v = gate_verdict({"feedback": GAIN, "probes": LOSS, "synthetic": GAIN}, GateSettings())
    assert not v["promote"] and v["why"] == "signals disagree: better on feedback but worse on probes"
    # The user's example queries are at most 8: they never decide, but a significant loss there refuses.
    v = gate_verdict({"examples": _s(0.2, 0.1, 0.3, 0.01, queries=8)}, GateSettings())
    assert not v["promote"] and "too few" in v["why"]
    v = gate_verdict({"probes": GAIN, "examples": dict(LOSS, queries=8)}, GateSettings())
    assert not v["promote"] and "examples" in v["why"]


def test_teacher_grades_pool_both_versions_and_feed_ndcg():
    """nDCG@10 against the teacher's grades, by hand: live ranks [a, b], candidate ranks [b, c];
    the judge grades a 0, b 3, c 2 (sigmoid of -5, 5, 1.2 → 0.007, 0.993, 0.769, times 3, rounded)."""
    assert [grade(x) for x in (-5.0, 5.0, 1.2)] == [0, 3, 2]
    logits = {"a": -5.0, "b": 5.0, "c": 1.2}
    calls = []

    def judge(query, ids):
        calls.append(list(ids))
        return [logits[i] for i in ids]

    live, cand = {"q": {"a": 0.0, "b": -1.0}}, {"q": {"b": 0.0, "c": -1.0}}
    qrels = judged_qrels({"q": "text"}, [live, cand], judge, pool=10)
    assert qrels == {"q": {"a": 0, "b": 3, "c": 2}} and calls == [["a", "b", "c"]]  # each pooled chunk judged once
    # pytrec_eval's nDCG uses gain = grade: ideal DCG = 3 + 2/log2(3).
    ideal = 3 + 2 / 1.5849625
    got = {run: per_query(qrels, r, ["nDCG@10"])["nDCG@10"]["q"] for run, r in (("live", live), ("cand", cand))}
    assert got["live"] == pytest.approx((0 + 3 / 1.5849625) / ideal, abs=1e-4)
    assert got["cand"] == pytest.approx((3 + 2 / 1.5849625) / ideal, abs=1e-4) == pytest.approx(1.0)
    # A probe's own source chunk keeps the top grade whatever the judge says.
    assert judged_qrels({"q": "text"}, [live], judge, {"q": {"a"}})["q"]["a"] == 3


def test_relative_grading_keeps_a_weak_judges_ranking_and_widens_the_difference():
    """A weak judge scores every pooled chunk near 0: absolute grades call them all "somewhat
    relevant" (2), so a candidate that brings the probe's source chunk from 5th to 1st barely moves
    nDCG@10. Relative grading (relevant = judged at least as high as the source) keeps what the judge
    ranks: the chunk it prefers to the source counts, the others do not, and the move shows."""
    logits = {"s": 0.6, "x": 0.9, "a": 0.3, "b": 0.2, "c": 0.1}
    judge = lambda query, ids: [logits[i] for i in ids]  # noqa: E731
    live = {"q": {"a": 5.0, "b": 4.0, "c": 3.0, "x": 2.0, "s": 1.0}}
    cand = {"q": {"s": 5.0, "x": 4.0, "a": 3.0, "b": 2.0, "c": 1.0}}
    source = {"q": {"s"}}

    def delta(grading: str) -> float:
        qrels = judged_qrels({"q": "text"}, [live, cand], judge, source, grading=grading)
        return (per_query(qrels, cand, ["nDCG@10"])["nDCG@10"]["q"] - per_query(qrels, live, ["nDCG@10"])["nDCG@10"]["q"])

    absolute = judged_qrels({"q": "text"}, [live, cand], judge, source)["q"]
    relative = judged_qrels({"q": "text"}, [live, cand], judge, source, grading="relative")["q"]
    assert absolute == {"s": 3, "x": 2, "a": 2, "b": 2, "c": 2}
    assert relative == {"s": 3, "x": 3, "a": 0, "b": 0, "c": 0}
    assert delta("relative") > 2 * delta("absolute") > 0
    # The source is judged even when neither version found it: it sets the bar.
    far = {"q": {"a": 1.0}}
    assert judged_qrels({"q": "text"}, [far], judge, source, grading="relative")["q"] == {"a": 0, "s": 3}
    # Without a source (a user's example query) there is no bar: the absolute grades stay.
    assert judged_qrels({"q": "text"}, [live], judge, None, grading="relative")["q"]["a"] == 2
    with pytest.raises(ValueError, match="grading 'calibrated'"):
        judged_qrels({"q": "text"}, [live], judge, source, grading="calibrated")


def test_ranked_grading_unsaturates_a_weak_judge_without_needing_a_source():
    """Absolute grades from a judge that scores everything near 0 put every pooled chunk at grade 2:
    nDCG@10 is near its ceiling whatever the order, so a version that puts the judge's favourites
    first gains almost nothing. Ranked grades keep the judge's order (best two 3, next two 2, ...),
    with or without a source chunk, and the same reordering shows several times larger."""
    logits = {"a": 0.9, "b": 0.7, "c": 0.5, "d": 0.3, "e": 0.1, "f": 0.0}
    judge = lambda query, ids: [logits[i] for i in ids]  # noqa: E731
    worst_first = {"q": {d: float(i) for i, d in enumerate("abcdef")}}  # f first ... a last
    best_first = {"q": {d: float(-i) for i, d in enumerate("abcdef")}}

    def delta(grading: str, source: dict | None) -> float:
        qrels = judged_qrels({"q": "text"}, [worst_first, best_first], judge, source, grading=grading)
        score = {n: per_query(qrels, run, ["nDCG@10"])["nDCG@10"]["q"] for n, run in
                 (("worst", worst_first), ("best", best_first))}
        return score["best"] - score["worst"]

    assert judged_qrels({"q": "text"}, [best_first], judge, None, grading="ranked")["q"] == {
        "a": 3, "b": 3, "c": 2, "d": 2, "e": 1, "f": 1}
    assert set(judged_qrels({"q": "text"}, [best_first], judge, None)["q"].values()) == {2}
    assert delta("absolute", None) == pytest.approx(0.0)
    assert delta("ranked", None) > 0.15
    # A source chunk the judge ranks low still keeps the top grade.
    assert judged_qrels({"q": "text"}, [best_first], judge, {"q": {"f"}}, grading="ranked")["q"]["f"] == 3
    assert delta("ranked", {"q": {"f"}}) > 0


def test_probes_are_other_kinds_on_held_out_documents_the_writer_did_not_use(tmp_path, make_tiny_collection,
                                                                            chat_server):
    from ragtune.data import beir
    from ragtune.ingest.sync import ingest
    from ragtune.models.generator import OpenAIGenerator
    from ragtune.synth.filters import FilterConfig, is_dev
    from ragtune.synth.probes import write_probes
    from ragtune.synth.queries import QueryGenConfig
    from ragtune.types import Acl

    assert probe_kinds(("question",)) == ("claim", "keywords")
    assert probe_kinds(("claim", "keywords")) == ("question",)
    docs = tmp_path / "docs.jsonl"
    docs.write_text("\n".join(json.dumps({"id": f"d{i}", "text": f"Document {i} explains topic {i} in enough words "
                                          "to count as a real passage that a person could ask something about. " * 2})
                              for i in range(40)))
    coll = make_tiny_collection("probes")
    ingest(coll, docs, Acl(public=True))
    synth = tmp_path / "synth"
    synth.mkdir()
    dev_chunks = [c for c in coll.chunks() if is_dev(c["doc_id"], 0.3)]
    used = dev_chunks[0]["chunk_id"]
    (synth / "queries.jsonl").write_text(json.dumps({"_id": "x", "text": "q", "metadata": {"chunk_id": used}}) + "\n")
    dev_ids = {c["chunk_id"] for c in dev_chunks}
    few = probe_chunks(coll, synth, 0.3, count=len(dev_ids) - 1, min_words=5)
    assert few == dev_ids - {used}  # chunks the writer did not use come first, never a train document's
    assert probe_chunks(coll, synth, 0.3, count=100, min_words=5) == dev_ids  # then the rest of the dev chunks
    assert len(probe_chunks(coll, synth, 0.3, count=2, min_words=5)) == 2
    # Fewer held-out chunks than probes asked for: each chunk gets one probe of each missing kind.
    chat_server.responder = lambda messages: ("topic words searched here" if "keywords" in messages[-1]["content"]
                                              else "A document explains a topic in enough words.")
    written = write_probes(coll, OpenAIGenerator(chat_server.url, model="served"), synth,
                           QueryGenConfig(types=("question",), min_chunk_words=5), FilterConfig(dev_fraction=0.3), 100)
    assert written["kinds"] == ["claim", "keywords"] and written["chunks"] == len(dev_ids)
    assert written["written"] == 2 * len(dev_ids)
    kinds = [q["metadata"]["type"] for q in beir.read_queries(synth / "probes")]
    assert sorted(kinds) == sorted(["claim", "keywords"] * len(dev_ids))


def test_teacher_judged_comparison_pools_both_versions_and_needs_a_judge_for_unlabelled_queries(
        tmp_path, make_tiny_collection):
    """compare_judged on two real index versions (two tiny embedders): a judge that finds only the
    candidate's first hit relevant makes the candidate win; unlabelled queries (the user's example
    queries) need a judge; with none, the probes' own source chunks judge."""
    from conftest import build_tiny_embedder
    from ragtune.collection.shadow import build_shadow
    from ragtune.data import beir
    from ragtune.errors import InputError
    from ragtune.gate import compare_judged, version_run
    from ragtune.ingest.sync import ingest
    from ragtune.types import Acl

    docs = tmp_path / "docs.jsonl"
    topics = ["glacier melt", "sourdough bread", "tidal power", "bee colonies", "copper mines", "violin varnish",
              "monsoon rain", "desert locusts", "lighthouses", "coral reefs", "olive harvest", "permafrost"]
    docs.write_text("\n".join(json.dumps({"id": f"d{i}", "text": f"A page about {t}: how {t} change over the years."})
                              for i, t in enumerate(topics)))
    coll = make_tiny_collection("judged", ["query.mode=dense"])
    ingest(coll, docs, Acl(public=True))
    shadow = build_shadow(coll, str(build_tiny_embedder(tmp_path / "other", seed=7)))
    examples = tmp_path / "examples"
    beir.write_queries(examples, [beir.query_record(f"e{i}", f"what about {t}?") for i, t in enumerate(topics)])
    queries = {q["_id"]: q["text"] for q in beir.read_queries(examples)}
    firsts = {q: next(iter(r)) for q, r in version_run(coll, shadow, queries).items()}
    seen = []

    def judge(query, ids):
        seen.append(len(ids))
        qid = next(q for q, text in queries.items() if text == query)
        return [5.0 if i == firsts[qid] else -5.0 for i in ids]

    got = compare_judged(coll, examples, shadow, judge, split="test")
    assert got.judged_by == "teacher" and got.queries == len(topics) and got.candidate == shadow
    assert got.metrics[shadow]["nDCG@10"] == pytest.approx(1.0) and got.delta >= 0 and got.wins_ties_losses[2] == 0
    assert len(seen) == len(topics) and all(n >= 10 for n in seen)  # both top 10s pooled, each chunk judged once
    with pytest.raises(InputError, match="need a judge"):
        compare_judged(coll, examples, shadow, None, split="test")
    first_chunk = {c["doc_id"]: c["chunk_id"] for c in sorted(coll.chunks(), key=lambda c: c["chunk_id"], reverse=True)}
    beir.write_qrels(examples, "dev", [(q, first_chunk[f"d{i}"], 1) for i, q in enumerate(queries)])
    by_source = compare_judged(coll, examples, shadow, None, split="dev")
    assert by_source.judged_by == "source chunk" and by_source.queries == len(topics)


# The writer's habit: every training question is the same long preamble around the passage's
# numbers (a small model's tic: "According to the passage, what about 12.5 and 95%?"). A model
# drilled on it learns to match numbers, which the held-out questions of the same writer reward
# and queries about the content do not need. Probes are asked for in other words: they come
# without the habit, about the passage's content words.
PREAMBLE = "According to the passage of this research article, what does it report about"


def _writer_with_a_habit(messages) -> str:
    import re

    prompt = messages[-1]["content"]
    passage = prompt.split("Passage:\n", 1)[1].split("\n\n", 1)[0]
    body = passage.split("\n", 1)[-1]
    if "own words" in prompt:  # a probe: plain content words from the passage
        words = re.findall(r"[A-Za-z][A-Za-z-]+", body)
        return " ".join(words[14:19]) if "keywords" in prompt else f"Studies report {' '.join(words[12:20])}."
    numbers = re.findall(r"\b\d+(?:\.\d+)?%?", body)
    return f"{PREAMBLE} {' and '.join(numbers[:5])}?" if len(numbers) >= 3 else "What?"  # "What?": filtered out


@pytest.mark.slow
def test_a_candidate_fitted_to_the_writer_is_refused_though_the_old_gate_would_promote_it(
        tmp_path, make_collection, chat_server, home):
    """Drilled on the writer's questions (40 steps over ~200 rows, 3 epochs): the held-out synthetic questions (same writer) show a
    significant gain — the old rule (Δ > 0, p < 0.05) promotes — while the probes (held-out
    documents, other kinds, other words) show none, and the new gate keeps the live index."""
    from conftest import SHARED_DATA
    from ragtune.adapt import AdaptConfig, adapt
    from ragtune.data.beir import read_queries
    from ragtune.ingest.sync import ingest
    from ragtune.models.generator import OpenAIGenerator
    from ragtune.synth.filters import FilterConfig
    from ragtune.synth.queries import QueryGenConfig
    from ragtune.train.embedder import EmbedderTrainConfig
    from ragtune.types import Acl

    src = tmp_path / "sf"
    src.mkdir()
    lines = (SHARED_DATA / "scifact" / "corpus.jsonl").read_text().splitlines()[:160]
    (src / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    coll = make_collection("overfit", ["query.mode=dense"])  # the embedder alone ranks: its change shows
    ingest(coll, src, Acl(public=True))
    chat_server.responder = _writer_with_a_habit
    config = AdaptConfig(queries=QueryGenConfig(types=("question",)), filters=FilterConfig(dev_fraction=0.35),
                         training=EmbedderTrainConfig(max_steps=40, learning_rate=5e-5, batch_size=16, max_seq_length=128),
                         probes=80, judge="none", min_probe_queries=20, tune=False)  # dense stays: see above
    report = adapt(coll, OpenAIGenerator(chat_server.url, model="served"), config, run_name="overfit", home=home,
                   probe_generator=OpenAIGenerator(chat_server.url, model="prober"))  # another writer for the probes
    old = report["steps"]["evaluate"]
    probes = report["steps"]["evaluate probes"]
    assert report["steps"]["probes"]["kinds"] == ["claim", "keywords"] and report["steps"]["probes"]["writer"] == "prober"
    synth = coll.dir / "synth" / "overfit"
    assert {q["metadata"]["generator"] for q in read_queries(synth)} == {"served"}
    assert {q["metadata"]["generator"] for q in read_queries(synth / "probes")} == {"prober"}
    assert old["delta"] > 0 and old["p_value"] < 0.05 and old["promote"], old  # the old gate would promote
    assert probes["queries"] >= 20 and not (probes["ci"][0] > 0 and probes["delta"] >= config.min_effect), probes
    decision = report["decision"]
    assert decision["decided_by"] == "probes" and not decision["promoted"], decision
    assert coll.live_version == "v1"
    md = (coll.dir / "adapt" / "overfit" / "report.md").read_text()
    assert "| probes |" in md and "| synthetic |" in md and "Decided by: probes" in md and "written by prober" in md
    assert set(probes["by_kind"]) == {"claim", "keywords"}  # which kinds a probe Δ comes from
    assert sum(k["queries"] for k in probes["by_kind"].values()) == probes["queries"] and "Probes by kind: claim Δ" in md


def test_probe_writer_needs_a_local_generator(make_collection, home):
    """--probe-writer names a local model or adapter: with an endpoint as the generator it is a
    clear error before any work, not a silent fallback to the loop's own writer."""
    from typer.testing import CliRunner

    from ragtune.cli import app

    coll = make_collection("endpoint", ["generator.backend=openai", "generator.base_url=http://127.0.0.1:9/v1"])
    coll.close()
    out = CliRunner().invoke(app, ["adapt", "-c", "endpoint", "--home", str(home), "--probe-writer", "qgen"])
    assert out.exit_code == 2 and "--probe-writer picks a local model or adapter" in out.output, out.output
