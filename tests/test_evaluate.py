"""Evaluation harness: metrics on hand-computable cases, loaders on the shared data, significance
on runs where the answer is known, and the eval commands end to end."""

from __future__ import annotations

import json
import math
import random

import pytest

from conftest import SHARED_DATA
from ragtune.evaluate.compare import compare_paired
from ragtune.evaluate.ir import per_query, score_run
from ragtune.evaluate.qa import exact_match, f1, normalize_answer, score_answers, subset_match


def test_ir_metrics_on_a_hand_computed_ranking():
    qrels = {"q1": {"d1": 1, "d3": 1}, "q2": {"d9": 1}}
    run = {"q1": {"d1": 3.0, "d2": 2.0, "d3": 1.0}, "q2": {"d5": 1.0}}
    m = score_run(qrels, run, ["P@3", "R@3", "RR@10", "AP", "nDCG@3", "Success@1"])
    ndcg_q1 = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert m["P@3"] == pytest.approx((2 / 3 + 0) / 2)
    assert m["R@3"] == pytest.approx((1 + 0) / 2)
    assert m["RR@10"] == pytest.approx((1 + 0) / 2)
    assert m["AP"] == pytest.approx(((1 + 2 / 3) / 2 + 0) / 2)
    assert m["nDCG@3"] == pytest.approx(ndcg_q1 / 2)
    assert m["Success@1"] == pytest.approx(0.5)
    assert per_query(qrels, run, ["RR@10"])["RR@10"] == {"q1": 1.0, "q2": 0.0}


def test_a_query_without_results_counts_as_zero():
    assert score_run({"q1": {"d1": 1}, "q2": {"d2": 1}}, {"q1": {"d1": 1.0}}, ["nDCG@10"])["nDCG@10"] == 0.5


@pytest.mark.parametrize("raw, normalized", [
    ("The Broncos!", "broncos"),
    ("  an   apple, a pear ", "apple pear"),
    ("Théâtre-de-la-Ville", "théâtredelaville"),
    ("A", ""),
])
def test_squad_normalization(raw, normalized):
    assert normalize_answer(raw) == normalized


def test_qa_metrics_and_abstention():
    assert exact_match("Denver Broncos", ["Denver Broncos", "Broncos"]) == 1.0
    assert f1("the Denver team", ["Denver Broncos"]) == pytest.approx(0.5)
    assert subset_match("They were the Denver Broncos.", ["Denver Broncos"]) == 1.0
    assert subset_match("Denverish", ["Denver"]) == 0.0  # token-aligned, not substring
    s = score_answers(["Paris", "I don't know", "I don't know", "Rome"], [["Paris"], [], ["Oslo"], []])
    assert s.exact_match == pytest.approx(2 / 4)  # Paris right; the abstention on q2 right
    assert s.abstention_precision == pytest.approx(1 / 2) and s.abstention_recall == pytest.approx(1 / 2)
    assert s.answered_rate == pytest.approx(0.5)


@pytest.mark.skipif(not SHARED_DATA.exists(), reason="../shared/data missing")
def test_loaders_on_shared_data():
    from ragtune.data.beir import load_beir
    from ragtune.data.squad import load_squad

    sf = load_beir(SHARED_DATA / "scifact", "test")
    assert (len(sf.corpus), len(sf.queries), sum(len(v) for v in sf.qrels.values())) == (5183, 300, 339)
    squad = load_squad(SHARED_DATA / "squad" / "dev-v1.1.json")
    assert len(squad) == 10570 and squad[0].answers[0] == "Denver Broncos"
    assert all(ex.context[s:s + len(a)] == a for ex in squad[:500] for a, s in zip(ex.answers, ex.answer_starts))
    covid = load_squad(SHARED_DATA / "covidqa" / "covidqa-dev.json")
    assert len(covid) == 802 and len({ex.article_id for ex in covid}) == 60 and not any(ex.is_impossible for ex in covid)


def test_squad_v2_impossible_questions(tmp_path):
    from ragtune.data.squad import load_squad

    path = tmp_path / "v2.json"
    path.write_text(json.dumps({"data": [{"title": "T", "paragraphs": [{"context": "Oslo is in Norway.", "qas": [
        {"id": "a", "question": "Where is Oslo?", "answers": [{"text": "Norway", "answer_start": 11}], "is_impossible": False},
        {"id": "b", "question": "Where is Lima?", "answers": [], "plausible_answers": [{"text": "Norway", "answer_start": 11}],
         "is_impossible": True}]}]}]}))
    a, b = load_squad(path)
    assert a.answers == ["Norway"] and not a.is_impossible and b.is_impossible and b.answers == []


def test_one_article_split_over_entries_keeps_one_number_per_context(tmp_path):
    from ragtune.data.squad import load_squad

    def entry(context, qid):
        return {"title": "T", "paragraphs": [{"context": context, "qas": [
            {"id": qid, "question": "?", "answers": [{"text": context[:4], "answer_start": 0}]}]}]}

    path = tmp_path / "split.json"
    path.write_text(json.dumps({"data": [entry("Oslo is in Norway.", "a"), entry("Lima is in Peru.", "b"),
                                         entry("Oslo is in Norway.", "c")]}))
    a, b, c = load_squad(path)
    assert (a.paragraph_index, b.paragraph_index, c.paragraph_index) == (0, 1, 0)


def test_paired_significance_on_known_cases():
    rng = random.Random(0)
    base = {f"q{i}": rng.random() for i in range(60)}
    same = compare_paired(base, dict(base))
    assert same.p_value == 1.0 and same.ties == 60 and same.delta == 0
    better = compare_paired(base, {q: v + 0.1 for q, v in base.items()})
    assert better.p_value < 0.001 and better.wins == 60 and better.ci_low > 0.05
    noise = compare_paired(base, {q: v + rng.choice([-0.1, 0.1]) for q, v in base.items()})
    assert noise.p_value > 0.05 and noise.ci_low < 0 < noise.ci_high


def test_weighted_comparison_follows_the_weights():
    rng = random.Random(0)
    base = {f"q{i}": rng.random() for i in range(60)}
    # half the queries gain 0.2, the other half lose 0.1: unweighted, a small gain
    other = {q: v + (0.2 if i < 30 else -0.1) for i, (q, v) in enumerate(base.items())}
    plain = compare_paired(base, other)
    assert plain.delta == pytest.approx(0.05)
    losers = compare_paired(base, other, weights={q: 0.1 if i < 30 else 1.0 for i, q in enumerate(base)})
    assert losers.delta == pytest.approx((30 * 0.1 * 0.2 - 30 * 0.1) / 33)  # the losing half weighs 10x
    assert losers.delta < 0 and losers.ci_high < 0 and losers.p_value < 0.01
    dropped = compare_paired(base, other, weights={q: 0.0 if i < 30 else 1.0 for i, q in enumerate(base)})
    assert dropped.n == 30 and dropped.delta == pytest.approx(-0.1) and dropped.wins == 0


def _scifact_slice(dst, n_queries=20, n_distractors=80):
    from ragtune.data.beir import load_beir

    ds = load_beir(SHARED_DATA / "scifact", "test")
    qids = sorted(ds.queries)[:n_queries]
    rel = sorted({d for q in qids for d in ds.qrels[q]})
    others = random.Random(1).sample(sorted(set(ds.corpus) - set(rel)), n_distractors)
    (dst / "qrels").mkdir(parents=True)
    (dst / "corpus.jsonl").write_text("\n".join(json.dumps({"_id": d, **ds.corpus[d]}) for d in rel + others) + "\n")
    (dst / "queries.jsonl").write_text("\n".join(json.dumps({"_id": q, "text": ds.queries[q]}) for q in qids) + "\n")
    (dst / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{q}\t{d}\t{r}\n" for q in qids for d, r in ds.qrels[q].items()))


@pytest.mark.skipif(not (SHARED_DATA / "scifact").exists(), reason="../shared/data/scifact missing")
@pytest.mark.slow
def test_eval_retrieval_and_compare_end_to_end(tmp_path, home, embedder):
    from typer.testing import CliRunner

    from ragtune.cli import app
    from ragtune.collection import Collection
    from ragtune.evaluate.runs import RunDir

    _scifact_slice(tmp_path / "slice")
    runner = CliRunner()
    out = runner.invoke(app, ["eval", "retrieval", "--dataset", str(tmp_path / "slice"), "-c", "slice", "--json",
                              "--home", str(home)], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    run = RunDir.open(json.loads(out.stdout)["run"])
    metrics = run.metrics()
    assert set(metrics) == {"bm25", "dense", "hybrid"}
    assert all(0.5 < metrics[m]["nDCG@10"] <= 1 and metrics[m]["R@100"] >= metrics[m]["R@10"] for m in metrics)
    assert (run.path / "run.hybrid.trec").read_text().split("\n")[0].split()[1] == "Q0"
    assert (run.path / "recall_at_k.png").stat().st_size > 1000 and "| hybrid |" in (run.path / "summary.md").read_text()
    assert run.config()["git_commit"] and run.config()["queries"] == 20
    # Re-running on the named collection reuses its index.
    again = runner.invoke(app, ["eval", "retrieval", "--dataset", str(tmp_path / "slice"), "-c", "slice", "--modes",
                                "bm25", "--json", "--home", str(home)], catch_exceptions=False)
    assert json.loads(again.stdout)["metrics"]["bm25"] == metrics["bm25"]
    # Without -c the corpus goes to a throw-away collection: same numbers, nothing left behind.
    scratch = runner.invoke(app, ["eval", "retrieval", "--dataset", str(tmp_path / "slice"), "--modes", "bm25",
                                  "--json", "--home", str(home)], catch_exceptions=False)
    assert json.loads(scratch.stdout)["metrics"]["bm25"] == metrics["bm25"]
    assert [c.name for c in Collection.list(home)] == ["slice"]

    cmp = runner.invoke(app, ["eval", "compare", f"{run.path}:bm25", f"{run.path}:hybrid", "--plot",
                              str(tmp_path / "d.png"), "--json"], catch_exceptions=False)
    result = json.loads(cmp.stdout)["measures"]["nDCG@10"]
    assert result["n"] == 20 and result["wins"] + result["ties"] + result["losses"] == 20
    assert result["mean_b"] == pytest.approx(metrics["hybrid"]["nDCG@10"])
    assert (tmp_path / "d.png").exists()
    bad = runner.invoke(app, ["eval", "compare", str(run.path), f"{run.path}:hybrid"])
    assert bad.exit_code == 2 and "name one as" in bad.output


def test_eval_qa_scores_a_predictions_file(tmp_path, home):
    from typer.testing import CliRunner

    from ragtune.cli import app

    data = {"data": [{"title": "T", "paragraphs": [{"context": "Oslo is the capital of Norway.", "qas": [
        {"id": "1", "question": "Capital of Norway?", "answers": [{"text": "Oslo", "answer_start": 0}]},
        {"id": "2", "question": "Country?", "answers": [{"text": "Norway", "answer_start": 23}]}]}]}]}
    (tmp_path / "qa.json").write_text(json.dumps(data))
    (tmp_path / "pred.json").write_text(json.dumps({"1": "Oslo", "2": "It is Norway"}))
    out = CliRunner().invoke(app, ["eval", "qa", "--dataset", str(tmp_path / "qa.json"), "--predictions",
                                   str(tmp_path / "pred.json"), "--json", "--home", str(home)], catch_exceptions=False)
    m = json.loads(out.stdout)["metrics"]
    assert m["exact_match"] == 0.5 and m["subset_match"] == 1.0 and m["f1"] == pytest.approx((1 + 0.5) / 2)


def test_eval_ingest_reports_completeness_freshness_correctness(tmp_path, make_tiny_collection):
    import os

    from ragtune.evaluate.ingestion import evaluate_ingestion
    from ragtune.ingest.sync import ingest
    from ragtune.types import Acl

    src = tmp_path / "kb"
    src.mkdir()
    (src / "a.md").write_text("# A\n\n" + "Alpha beta gamma. " * 40)
    (src / "b.txt").write_text("Short note about budgets.")
    (src / "bad.pdf").write_bytes(b"nope")
    coll = make_tiny_collection(overrides=["chunking.chunk_size=32", "chunking.chunk_overlap=8"])
    ingest(coll, src, Acl(public=True))
    r = evaluate_ingestion(coll)
    assert r["completeness"]["source_files_found"] == 3 and r["completeness"]["source_files_indexed"] == 2
    assert r["completeness"]["failed_last_run"] == 1 and r["completeness"]["chunks_store"] == r["completeness"]["chunks_manifest"]
    assert r["correctness"]["checked_chunks"] == r["completeness"]["chunks_store"] > 3
    assert r["correctness"]["mismatched_chunks"] == 0 and r["freshness"]["stale_documents"] == 0
    (src / "b.txt").write_text("Short note about budgets, revised.")
    os.utime(src / "b.txt", (1e9, 2e9))
    r = evaluate_ingestion(coll)
    assert r["freshness"]["stale_documents"] == 1 and r["correctness"]["mismatched_chunks"] == 0


def test_squad_importer_marks_the_chunk_holding_the_answer(tmp_path):
    from transformers import AutoTokenizer

    from ragtune.config import ChunkingConfig
    from ragtune.data.beir import load_beir
    from ragtune.data.squad import QAExample, squad_to_beir
    from ragtune.ingest.chunking import Chunker
    from ragtune.models.loading import resolve_model

    context = " ".join(f"Fact {i} says the code is {i * 7}." for i in range(60))
    examples = [QAExample(id=f"q{i}", question=f"What does fact {i} say?", context=context, answers=[f"{i * 7}"],
                          answer_starts=[context.index(f"Fact {i} says") + len(f"Fact {i} says the code is ")],
                          title="Codes", article_id="art")
                for i in (3, 41)] + [QAExample(id="none", question="?", context=context, answers=[], article_id="art")]
    chunker = Chunker.from_tokenizer(ChunkingConfig(chunk_size=32, chunk_overlap=0, parent_size=0),
                                     AutoTokenizer.from_pretrained(resolve_model("all-MiniLM-L6-v2")))
    stats = squad_to_beir(examples, tmp_path / "ir", chunker)
    ds = load_beir(tmp_path / "ir")
    assert stats["queries"] == 2 and set(ds.queries) == {"q3", "q41"}
    for q, i in (("q3", 3), ("q41", 41)):
        (doc,) = ds.qrels[q]
        assert f"Fact {i} says the code is {i * 7}" in ds.corpus[doc]["text"]


QA_FILE = {"version": "v2.0", "data": [
    {"title": "Harbour", "paragraphs": [
        {"context": "The old harbour of Velmar was rebuilt in 1932. Its lighthouse is painted red and white. "
                    "Ferries leave for the islands every two hours.",
         "qas": [
             {"id": "h1", "question": "When was the harbour of Velmar rebuilt?",
              "answers": [{"text": "1932", "answer_start": 42}]},
             {"id": "h2", "question": "How often do ferries leave for the islands?",
              "answers": [{"text": "Ferries leave for the islands every two hours.", "answer_start": 89}]}]}]},
    {"title": "Orchard", "paragraphs": [
        {"context": "The orchard grows twelve varieties of apple. Harvest starts in late September.",
         "qas": [
             {"id": "o1", "question": "When does the apple harvest start?",
              "answers": [{"text": "late September", "answer_start": 63}]},
             {"id": "o2", "question": "Who owns the orchard?", "answers": [], "is_impossible": True}]}]}]}


@pytest.mark.slow
def test_eval_qa_answers_through_a_collection(tmp_path, home, chat_server):
    """Extractive baseline (no LLM) and the generative path over a real OpenAI-compatible server:
    answers, hit@k of the answer-bearing chunk, latency per stage, a judge-ready answers file."""
    from typer.testing import CliRunner

    from ragtune.cli import app
    from ragtune.data.squad import load_squad

    path = tmp_path / "qa.json"
    path.write_text(json.dumps(QA_FILE))
    assert [ex.answers[0] for ex in load_squad(path)[:3]] == ["1932", "Ferries leave for the islands every two hours.",
                                                              "late September"]
    runner = CliRunner()
    base = ["eval", "qa", "--dataset", str(path), "-c", "qa", "--json", "--home", str(home)]
    out = runner.invoke(app, base + ["--set", "answer.mode=extractive"], catch_exceptions=False)
    result = json.loads(out.stdout)
    m = result["metrics"]
    assert m["n"] == 4 and m["hit@1"] == 1.0 and m["hit@5"] == 1.0 and m["answer_in_context"] == 1.0
    answers = {json.loads(line)["id"]: json.loads(line) for line in open(f"{result['run']}/answers.jsonl")}
    assert answers["h2"]["answer"] == "Ferries leave for the islands every two hours."  # the sentence baseline's EM
    assert answers["h1"]["answer"] == "The old harbour of Velmar was rebuilt in 1932."  # subset match, not EM
    assert m["exact_match"] == 0.25 and m["subset_match"] >= 0.5
    assert answers["o2"]["answer_rank"] is None and "latency_ms.read.p50" in m and "latency_ms.retrieve.p50" in m
    assert set(answers["h1"]) >= {"question", "answer", "contexts", "reference"}  # what `eval judge` reads

    chat_server.replies += ["1932 [1]", "Ferries leave for the islands every two hours [1].", "In late September [1].",
                            "I don't know."]
    sets = ["--set", "generator.backend=openai", "--set", f"generator.base_url={chat_server.url}",
            "--set", "generator.model=served"]
    gen = json.loads(runner.invoke(app, base + sets, catch_exceptions=False).stdout)["metrics"]
    # Questions are answered in file order (h1, h2, o1, o2); citation markers are not scored;
    # "In late September" is no exact match; the right abstention on o2 counts as one.
    assert gen["exact_match"] == 0.75 and gen["subset_match"] == 1.0 and gen["abstention_recall"] == 1.0 and gen["abstention_precision"] == 1.0
    assert "latency_ms.generate.p50" in gen and gen["abstention_rate"] == 0.25
    bad = runner.invoke(app, ["eval", "qa", "--dataset", str(path), "--home", str(home)])
    assert bad.exit_code == 2 and "either -c COLLECTION" in bad.output


def test_eval_retrieval_skips_and_counts_bad_corpus_records(tmp_path, home, tiny_embedder):
    from ragtune.data.beir import corpus_record, query_record, write_corpus, write_qrels, write_queries
    from ragtune.evaluate.retrieval import evaluate_retrieval

    folder = tmp_path / "tiny"
    topics = ["aspirin thins the blood", "insulin lowers blood sugar", "statins lower cholesterol",
              "antibiotics kill bacteria", "vaccines train the immune system"]
    write_corpus(folder, [corpus_record(f"d{i}", f"Clinical note: {t}.") for i, t in enumerate(topics)]
                 + [corpus_record("empty1", ""), corpus_record("empty2", "   ")])
    write_queries(folder, [query_record(f"q{i}", t.split()[0]) for i, t in enumerate(topics)])
    write_qrels(folder, "test", [(f"q{i}", f"d{i}", 1) for i in range(len(topics))])
    with (folder / "corpus.jsonl").open("a") as f:
        f.write("{not json\n")

    run = evaluate_retrieval(folder, modes=["bm25"], home=home, depth=5, overrides=[f"embedder.model={tiny_embedder}"])
    config = run.config()
    assert config["corpus_failed"] == 3 and len(config["corpus_failures"]) == 3  # two empty records, one bad line
    assert run.metrics()["bm25"]["nDCG@10"] > 0.9  # the rest is scored
    assert "3 corpus records could not be loaded and were skipped" in (run.path / "summary.md").read_text()
