"""Domain adaptation, step by step, on a real slice of SciFact (never its test qrels): synthetic
questions (the real local model, and an OpenAI-compatible endpoint), filters, hard negatives,
embedder training, registry, shadow index, promote / refuse / rollback, and the whole loop."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from conftest import SHARED_DATA, NeverCalled, run_cli
from ragtune.ingest.sync import ingest
from ragtune.types import Acl

# Real models, real servers, subprocesses or training: `make test` runs them, `make test-fast` does not.
pytestmark = pytest.mark.slow

N_DOCS = 40


@pytest.fixture
def scifact(tmp_path, make_collection):
    src = tmp_path / "sf"
    src.mkdir()
    lines = (SHARED_DATA / "scifact" / "corpus.jsonl").read_text().splitlines()[:N_DOCS]
    (src / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    coll = make_collection("sf")
    ingest(coll, src, Acl(public=True))
    return coll


def question_from_prompt(messages) -> str:
    """Stands in for a capable LLM behind an endpoint: a query of the kind asked for (question,
    claim or keywords) built from the passage's words."""
    prompt = messages[-1]["content"]
    passage = prompt.split("Passage:\n", 1)[1].split("\n\nWrite ", 1)[0]
    words = re.findall(r"[A-Za-z][A-Za-z-]+", passage.split("\n", 1)[-1])
    if "keywords" in prompt.split("\n\nWrite ", 1)[-1]:
        return " ".join(words[3:7])
    if "claim" in prompt.split("\n\nWrite ", 1)[-1]:
        return f"Studies report {' '.join(words[3:11])}."
    return f"What is known about {' '.join(words[3:11])}?"


def test_local_model_writes_questions_and_generation_resumes(scifact, local_generator, tmp_path):
    from ragtune.synth.queries import QueryGenConfig, generate_queries

    folder = tmp_path / "synth"
    n = generate_queries(scifact, local_generator, folder, QueryGenConfig(max_chunks=3, types=("question",)))
    rows = [json.loads(line) for line in (folder / "queries.jsonl").read_text().splitlines()]
    assert n == 3 and len(rows) == 3 and len({r["metadata"]["chunk_id"] for r in rows}) == 3
    assert sum(r["text"].endswith("?") for r in rows) >= 2, [r["text"] for r in rows]
    corpus = [json.loads(line) for line in (folder / "corpus.jsonl").read_text().splitlines()]
    assert len(corpus) == scifact.store.count()  # every chunk: negatives may be any of them

    never = NeverCalled("finished chunks must not be generated again")
    assert generate_queries(scifact, never, folder, QueryGenConfig(max_chunks=3, types=("question",))) == 3


def test_each_query_kind_gets_its_prompt_and_its_rules(scifact, local_generator, tmp_path):
    from ragtune.synth.filters import FilterConfig, filter_queries
    from ragtune.synth.queries import QueryGenConfig, generate_queries

    folder = tmp_path / "kinds"
    generate_queries(scifact, local_generator, folder, QueryGenConfig(max_chunks=9, per_chunk=1))
    rows = [json.loads(line) for line in (folder / "queries.jsonl").read_text().splitlines()]
    kinds = [r["metadata"]["type"] for r in rows]
    assert set(kinds) == {"question", "claim", "keywords"} and max(kinds.count(k) for k in set(kinds)) <= 5
    report = filter_queries(scifact, folder, FilterConfig(round_trip_k=1000))
    assert report.candidates == 9
    kept = {q for split in ("train", "dev") for q in _qrels(folder, split)}
    for r in rows:
        if r["_id"] in kept:  # what survives is of its kind
            if r["metadata"]["type"] == "claim":
                assert "?" not in r["text"] and "passage" not in r["text"].lower()
            elif r["metadata"]["type"] == "keywords":
                assert 2 <= len(r["text"].split()) <= 6
            else:
                assert r["text"].endswith("?")


def test_writer_training_targets_are_of_their_kind_and_claims_are_not_copies():
    """Claim targets are the statement a SQuAD question and its answer make, in the annotator's
    words: they hold the answer, pass the claim rules (no 12-word copy of the passage), and no
    paragraph is lost for want of one."""
    from ragtune.data.squad import load_squad
    from ragtune.synth.queries import DEFAULT_TYPES, qg_training_examples
    from ragtune.synth.query_types import QUERY_TYPES, claim_from_question

    squad = load_squad(SHARED_DATA / "squad" / "dev-v1.1.json")
    paragraphs = {(ex.article_id, ex.paragraph_index) for ex in squad}
    examples = qg_training_examples(squad, types=DEFAULT_TYPES)
    assert len(examples) == len(paragraphs)  # a paragraph without a claim rewrite takes another kind
    kinds = {"question": 0, "claim": 0, "keywords": 0}
    for e in examples:
        target, prompt = e["completion"][0]["content"], e["prompt"][-1]["content"]
        kind = next(k for k in kinds if QUERY_TYPES[k].instruction in prompt)
        kinds[kind] += 1
        passage = prompt.split(QUERY_TYPES[kind].instruction)[0]
        assert QUERY_TYPES[kind].malformed(target, passage) is None, (kind, target)
    assert min(kinds.values()) > len(examples) / 5, kinds  # still a mix
    # a quarter carry example queries of their kind from other articles: style, never their own answer
    shown = [e for e in examples if "style and length of these real queries" in e["prompt"][-1]["content"]]
    assert 0.15 < len(shown) / len(examples) < 0.35
    listed = [e["prompt"][-1]["content"].split("real queries:\n", 1)[1].split("\n") for e in shown]
    assert all(2 <= len(lines) <= 8 for lines in listed)
    assert all(f"- {e['completion'][0]['content']}" not in lines for e, lines in zip(shown, listed))
    claims = [(ex, claim_from_question(ex.question, ex.answers[0])) for ex in squad[:2000]]
    made = [(ex, c) for ex, c in claims if c]
    assert len(made) > len(claims) / 6
    assert all(ex.answers[0].strip().rstrip(".").lower() in c.lower() and "?" not in c for ex, c in made)


def test_a_writer_wrapping_its_query_in_talk_about_the_passage_keeps_the_content():
    from ragtune.synth.query_types import QUERY_TYPES

    # Replies SmolLM2-135M really wrote for SciFact abstracts (prompted).
    replies = {
        "claim": ("The passage suggests that BMP signaling inhibits NODAL pathway activation. However, it does not "
                  "provide evidence.", "BMP signaling inhibits NODAL pathway activation."),
        "question": ("What does the passage suggest about the importance of PI3K in cancer?",
                     "What is known about the importance of PI3K in cancer?"),
        "keywords": ("The passage is about prion genetics", "prion genetics"),
    }
    # and one the trained writer wrote for COVID-QA (benchmarks/results/qgen_writer.md): run-on
    # terms are cut to the first six content words, as its training targets were
    long = QUERY_TYPES["keywords"].parse("monoclonal antibodies purified from hybridoma cell line constructed by Prof Zhu")
    assert long == "monoclonal antibodies purified hybridoma cell line"
    assert QUERY_TYPES["keywords"].parse("statins and dementia") == "statins and dementia"  # short: as written
    talk = QUERY_TYPES["keywords"].parse("The passage contains several key phrases that provide context")
    assert QUERY_TYPES["keywords"].malformed(talk, "") == "generic"  # its "the" gone, still talk about the task
    for kind, (reply, expected) in replies.items():
        query = QUERY_TYPES[kind].parse(reply)
        assert query.lower() == expected.lower() and QUERY_TYPES[kind].malformed(query, "") is None, (kind, query)
    for kind, reply in (("question", "What is the answer?"), ("claim", "This passage does not support a claim.")):
        assert QUERY_TYPES[kind].malformed(QUERY_TYPES[kind].parse(reply), "") is not None  # nothing to keep


def test_a_query_that_restates_an_example_is_filtered(scifact, tmp_path):
    """A writer shown examples may copy one for every passage (SmolLM2 did, 350 of 500 times): such
    queries are marked at generation and refused by the filter, naming why."""
    from ragtune.synth.filters import FilterConfig, filter_queries
    from ragtune.synth.queries import QueryGenConfig, generate_queries

    from ragtune.models.generator import Generation

    class Copier:
        name, context_window = "copier", 2048

        def count_tokens(self, text):
            return len(text.split())

        def generate(self, messages, config):
            return Generation("In yeast, the absence of RNA surveillance pathways causes sensitivity to high iron.", 1, 1, "stop")

    example = "In S. cerevisiae, the absence of RNA surveillance pathways causes sensitivity to high iron conditions."
    folder = tmp_path / "copies"
    generate_queries(scifact, Copier(), folder, QueryGenConfig(max_chunks=3, examples=(example, "Statins lower LDL.")))
    rows = [json.loads(line) for line in (folder / "queries.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(r["metadata"]["copies_example"] for r in rows)
    report = filter_queries(scifact, folder, FilterConfig())
    assert report.kept == 0 and report.malformed_reasons == {"copies an example query": 3}


def test_example_queries_steer_the_kind_and_length(scifact, local_generator, tmp_path):
    import statistics

    from ragtune.synth.queries import QueryGenConfig, check_examples, generate_queries

    short = check_examples(["hypoxia tumour growth", "vitamin D fracture risk", "statins dementia", "BRCA1 repair",
                            "gut microbiome obesity", "aspirin stroke prevention"])
    long = check_examples(["Low-dose aspirin taken daily for five years lowers the risk of a first stroke in adults.",
                           "Vitamin D supplements given to elderly women reduce the rate of hip fractures by a third."])
    lengths = {}
    for name, examples in (("short", short), ("long", long)):
        folder = tmp_path / name
        generate_queries(scifact, local_generator, folder, QueryGenConfig(max_chunks=4, examples=examples))
        rows = [json.loads(line) for line in (folder / "queries.jsonl").read_text().splitlines()]
        assert {r["metadata"]["type"] for r in rows} == ({"keywords"} if name == "short" else {"claim"})
        lengths[name] = statistics.fmean(len(r["text"].split()) for r in rows)
    assert lengths["short"] < lengths["long"], lengths
    with pytest.raises(ValueError, match="at most 8"):
        check_examples([f"query {i}" for i in range(9)])


def test_a_reader_answers_the_filtered_synthetic_questions_from_their_chunk(scifact, tmp_path):
    from ragtune.answer.extractive import SentenceReader
    from ragtune.data.squad import load_squad
    from ragtune.synth.filters import FilterConfig, filter_queries
    from ragtune.synth.reader_answers import reader_answers

    chunks = scifact.chunks()
    folder = tmp_path / "rq"
    _write_candidates(folder, scifact, [(i, question_from_prompt([{"content": f"Passage:\n{c['search_text']}\n\nWrite one"}]))
                                        for i, c in enumerate(chunks[:8])] + [(8, "too short?")])
    filtered = filter_queries(scifact, folder, FilterConfig(round_trip_k=1000))
    counts = reader_answers(scifact, folder, SentenceReader(scifact.embedder), tmp_path / "qa.json", splits=("train", "dev"))
    assert counts["questions"] == filtered.kept == 8 and counts["kept"] == 8  # the baseline has no "no answer"
    by_chunk = {c["chunk_id"]: c for c in chunks}
    for ex in load_squad(tmp_path / "qa.json"):
        assert ex.context[ex.answer_starts[0]:].startswith(ex.answers[0])  # a span of its own chunk
        assert ex.context in {c["text"] for c in by_chunk.values()}
    with pytest.raises(Exception, match="filter the questions first"):
        reader_answers(scifact, tmp_path / "nothing", SentenceReader(scifact.embedder), tmp_path / "x.json")


def test_label_free_tuning_applies_only_a_significant_win(scifact, home, tmp_path):
    from ragtune.evaluate.tune import DEPTH_CANDIDATES, FUSION_CANDIDATES, tune_pipeline
    from ragtune.synth.filters import FilterConfig, filter_queries

    chunks = scifact.chunks()
    folder = scifact.dir / "synth" / "default"
    _write_candidates(folder, scifact, [(i, question_from_prompt([{"content": f"Passage:\n{c['search_text']}\n\nWrite one"}]))
                                        for i, c in enumerate(chunks)])
    filter_queries(scifact, folder, FilterConfig(round_trip_k=1000, dev_fraction=0.5))
    # Dense-only retrieval (a deliberately poor setting here): these questions copy their chunk's
    # words, so keyword-aware settings find the chunk more often, and the tuner must say so.
    scifact.pipeline = scifact.pipeline.with_overrides(["query.mode=dense"])
    scifact.save_pipeline()
    report = tune_pipeline(scifact, folder)
    assert report.splits == ["train", "dev"]  # no live model learned from the train questions: both decide
    assert report.questions == len(chunks) and 2 * report.decision_questions in (len(chunks), len(chunks) + 1)
    assert len(report.fold_choices) == 2  # each half's choice, tested on the other
    assert len(report.candidates) == len(FUSION_CANDIDATES) + len(DEPTH_CANDIDATES)  # the search on all questions
    assert report.lexical_overlap > 0.5  # the bias it corrects for, measured
    assert max(c.mrr for c in report.candidates) > report.current_mrr  # keyword-aware settings find more
    if report.chosen:
        assert report.delta > 0 and report.p_value < 0.05 and report.chosen.get("query.mode") != "dense"
    few = scifact.dir / "synth" / "few"  # a handful of questions cannot confirm anything: said plainly
    _write_candidates(few, scifact, [(i, question_from_prompt([{"content": f"Passage:\n{c['search_text']}\n\nWrite one"}]))
                                     for i, c in enumerate(chunks[:8])])
    filter_queries(scifact, few, FilterConfig(round_trip_k=1000, dev_fraction=0.5))
    with pytest.raises(Exception, match="to confirm a setting on .*--max-chunks"):
        tune_pipeline(scifact, few)
    scifact.close()
    out = json.loads(run_cli("tune", "-c", "sf", "--apply", "--json", home=home).stdout)
    assert out["applied"] == bool(out["chosen"])
    shown = json.loads(run_cli("collections", "show", "sf", home=home).stdout)["pipeline"]["query"]
    if out["applied"]:
        assert all(shown[k.split(".", 1)[1]] == v for k, v in out["chosen"].items() if k.startswith("query."))
    else:  # refused: the pipeline is as it was
        assert shown["mode"] == "dense"


def test_example_weights_move_the_questions_toward_the_examples_overlap():
    from ragtune.evaluate.tune import example_weights

    overlap = {f"q{i}": i / 99 for i in range(100)}  # uniform over [0, 1]
    weights = example_weights(overlap, [0.05, 0.1, 0.1, 0.15, 0.2, 0.12, 0.08, 0.9])  # mostly keyword-poor users
    low = sum(w for q, w in weights.items() if overlap[q] <= 0.25) / 25
    high = sum(w for q, w in weights.items() if overlap[q] > 0.75) / 25
    assert low > 3 * high  # the bin seven examples fell in weighs most
    assert sum(weights.values()) == pytest.approx(100)  # a reweighting, not a rescaling
    even = example_weights(overlap, [0.1, 0.3, 0.6, 0.9])
    assert max(even.values()) == pytest.approx(min(even.values()), rel=0.1)  # bins of 24 to 26 questions


def _qrels(folder, split) -> set[str]:
    path = folder / "qrels" / f"{split}.tsv"
    return {line.split("\t")[0] for line in path.read_text().splitlines()[1:] if line.strip()} if path.exists() else set()


def _write_candidates(folder, scifact, questions):
    from ragtune.synth.queries import write_corpus

    folder.mkdir(parents=True, exist_ok=True)
    chunks = scifact.chunks()
    write_corpus(chunks, folder)
    with (folder / "queries.jsonl").open("w") as f:
        for i, (chunk_index, text) in enumerate(questions):
            c = chunks[chunk_index]
            f.write(json.dumps({"_id": f"q{i}", "text": text,
                                "metadata": {"chunk_id": c["chunk_id"], "doc_id": c["doc_id"]}}) + "\n")
    return chunks


def test_filters_remove_what_they_claim(scifact, tmp_path):
    from ragtune.synth.filters import FilterConfig, filter_queries

    chunks = scifact.chunks()
    first = chunks[0]["text"]
    good = [(i, question_from_prompt([{"content": f"Passage:\n{c['search_text']}\n\nWrite one"}]))
            for i, c in enumerate(chunks[:12])]
    sentence = " ".join(first.split()[:12])
    candidates = good + [
        (0, "Is it?"),  # too short
        (0, "This is not a question at all"),  # no question mark
        (0, sentence + "?"),  # copied from the passage
        (good[1][0], good[1][1].upper()),  # a duplicate after normalisation
        (5, "Which football club won the 1998 world cup final in Paris?"),  # its chunk cannot answer it
    ]
    folder = tmp_path / "synth"
    _write_candidates(folder, scifact, candidates)
    report = filter_queries(scifact, folder, FilterConfig(dev_fraction=0.3))
    assert report.candidates == len(candidates)
    assert report.removed["malformed"] == 3 and report.malformed_reasons == {
        "too short": 1, "not a question": 1, "copied from the passage": 1}
    assert report.removed["duplicate"] == 1
    assert report.removed["round_trip"] >= 1
    kept_ids = {line.split("\t")[0] for side in ("train", "dev")
                for line in (folder / "qrels" / f"{side}.tsv").read_text().splitlines()[1:]}
    assert f"q{len(candidates) - 1}" not in kept_ids and report.kept == len(kept_ids) == report.train + report.dev
    # The held-out split is by document: no document on both sides.
    doc_of = {c["chunk_id"]: c["doc_id"] for c in chunks}
    sides = {side: {doc_of[line.split("\t")[1]] for line in (folder / "qrels" / f"{side}.tsv").read_text().splitlines()[1:]}
             for side in ("train", "dev")}
    assert not sides["train"] & sides["dev"]


def test_hard_negatives_exclude_positive_its_document_and_near_duplicates(scifact, tmp_path):
    from ragtune.synth.negatives import MiningConfig, mine_negatives, training_rows

    chunks = scifact.chunks()
    questions = [(i, question_from_prompt([{"content": f"Passage:\n{c['search_text']}\n\nWrite one"}]))
                 for i, c in enumerate(chunks[:10])]
    folder = tmp_path / "synth"
    _write_candidates(folder, scifact, questions)
    (folder / "qrels").mkdir()
    (folder / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"q{i}\t{chunks[c]['chunk_id']}\t1\n" for i, (c, _) in enumerate(questions)))
    margin = 0.05
    stats = mine_negatives(scifact, folder, "train", MiningConfig(num_negatives=3, relative_margin=margin))
    assert stats["queries"] == 10 and stats["negatives"] > 0
    doc_of = {c["chunk_id"]: c["doc_id"] for c in chunks}
    for line in (folder / "negatives.train.jsonl").read_text().splitlines():
        r = json.loads(line)
        assert r["positive"] not in r["negatives"]
        assert all(doc_of[n] != doc_of[r["positive"]] for n in r["negatives"])
        assert all(s < r["positive_score"] * (1 - margin) for s in r["scores"].values())
    rows = training_rows(folder, "train", num_negatives=1)
    assert rows and set(rows[0]) == {"anchor", "positive", "negative_1"}


def _pairs(scifact, n=24):
    chunks = scifact.chunks()[:n]
    return [{"anchor": question_from_prompt([{"content": f"Passage:\n{c['search_text']}\n\nWrite one"}]),
             "positive": c["search_text"]} for c in chunks]


@pytest.mark.parametrize("method", ["full", "lora"])
def test_training_changes_the_model_and_reloads_identically(scifact, home, method):
    from sentence_transformers import SentenceTransformer

    from ragtune.models.registry import ModelRegistry
    from ragtune.train.embedder import EmbedderTrainConfig, train_embedder

    rows = _pairs(scifact)
    registry = ModelRegistry(home, "embedder", "sf")
    with registry.new_version() as (version, out):
        result = train_embedder("all-MiniLM-L6-v2", rows, out, EmbedderTrainConfig(method=method, max_steps=3, batch_size=8))
        registry.describe(out, base="all-MiniLM-L6-v2", method=method)
    assert result.steps == 3 and np.isfinite(result.train_loss)
    if method == "lora":
        assert result.trainable_parameters < result.total_parameters / 10
    meta = registry.get(version)
    assert meta["method"] == method and meta["size_bytes"] > 10_000_000 and not list(registry.root.glob("*.tmp"))
    texts = [r["anchor"] for r in rows[:4]]
    base = scifact.embedder.model.encode(texts, normalize_embeddings=True)
    a = SentenceTransformer(meta["path"], device="cpu").encode(texts, normalize_embeddings=True)
    b = SentenceTransformer(meta["path"], device="cpu").encode(texts, normalize_embeddings=True)
    assert np.array_equal(a, b)
    assert not np.allclose(a, base, atol=1e-4), "training did not change the model"
    # The shared, cached base model is untouched by training a copy.
    assert np.allclose(scifact.embedder.model.encode(texts, normalize_embeddings=True), base, atol=1e-6)


def test_shadow_promote_refuse_and_rollback(scifact, home, tmp_path):
    from ragtune.collection.shadow import build_shadow, promote, rollback
    from ragtune.models.registry import ModelRegistry
    from ragtune.retrieve import Searcher
    from ragtune.train.embedder import EmbedderTrainConfig, train_embedder
    from ragtune.types import Principal

    registry = ModelRegistry(home, "embedder", "sf")
    with registry.new_version() as (version, out):
        train_embedder("all-MiniLM-L6-v2", _pairs(scifact), out, EmbedderTrainConfig(max_steps=2, batch_size=8))
    path = str(registry.path(version))
    live_before = [h.chunk_id for h in Searcher(scifact).search("vitamin D deficiency", Principal(), mode="dense", k=5)]
    shadow = build_shadow(scifact, path)
    assert shadow == "v2" and scifact.live_version == "v1" and scifact.versions()["v2"]["state"] == "ready"
    with scifact.at_version("v2") as view:
        assert view.store.count() == scifact.store.count() and view.embedder.model is not scifact.embedder.model
        assert Searcher(view).search("vitamin D deficiency", Principal(), mode="dense", k=5)
    # Live answers are unchanged by the shadow's existence.
    assert [h.chunk_id for h in Searcher(scifact).search("vitamin D deficiency", Principal(), mode="dense", k=5)] == live_before

    promote(scifact, shadow, reason="test")
    assert scifact.live_version == "v2" and scifact.pipeline.embedder.model == path
    assert scifact.embedder.config.model == path  # queries are now embedded by the new model
    assert rollback(scifact) == "v1" and scifact.live_version == "v1"
    assert scifact.pipeline.embedder.model == "all-MiniLM-L6-v2"
    with pytest.raises(ValueError, match="nothing to roll back"):
        rollback(scifact)

    # A shadow built before a new document arrived gets it (embedded by its own model) as it goes live.
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "note.md").write_text("# Note\n\nA new document about glacier melt rates in the Alps.")
    ingest(scifact, extra, Acl(public=True))
    with scifact.at_version("v2") as view, pytest.raises(ValueError, match="writes to the live index"):
        ingest(view, extra, Acl(public=True))
    promote(scifact, shadow)
    assert scifact.live_version == "v2" and scifact.store.count(doc_id="extra/note.md") == 1
    assert Searcher(scifact).search("glacier melt rates Alps", Principal(), mode="dense", k=1)[0].doc_id == "extra/note.md"


def test_adapt_loop_refuses_a_worse_model_and_resumes(scifact, home, chat_server):
    from ragtune.adapt import AdaptConfig, adapt
    from ragtune.models.generator import OpenAIGenerator
    from ragtune.synth.filters import FilterConfig
    from ragtune.train.embedder import EmbedderTrainConfig

    chat_server.responder = question_from_prompt
    gen = OpenAIGenerator(chat_server.url, model="served")
    scifact.pipeline.query.mode = "dense"  # the embedder alone decides, so its damage shows
    # A learning rate this high wrecks the model: the loop must see that and keep the live index.
    # tune=False: a tuned pipeline could leave dense retrieval, and the embedder's damage unseen.
    config = AdaptConfig(filters=FilterConfig(dev_fraction=0.4), tune=False,
                         training=EmbedderTrainConfig(max_steps=6, batch_size=8, learning_rate=0.05))
    steps = []
    report = adapt(scifact, gen, config, home=home, on_step=steps.append)
    assert steps == ["queries", "filter", "probes", "mine", "train", "shadow", "evaluate", "evaluate probes", "decide"]
    cmp = report["steps"]["evaluate"]
    assert cmp["queries"] > 0 and cmp["delta"] < 0 and not cmp["promote"], cmp
    assert report["decision"]["promoted"] is False and scifact.live_version == "v1"
    assert (scifact.dir / "adapt" / "latest" / "report.md").read_text().startswith("# Adaptation of `sf`")
    assert (scifact.dir / "adapt" / "latest" / "deltas.png").stat().st_size > 1000
    calls = len(chat_server.requests)
    again = adapt(scifact, gen, config, home=home, on_step=steps.append)
    assert again["decision"] == report["decision"] and len(chat_server.requests) == calls and len(steps) == 9


def test_adapt_loop_with_a_reranker_and_its_teacher_scores(scifact, home, chat_server):
    """The full loop: synth → filter → mine → reranker (gated) → teacher scores → distilled
    embedder → shadow → evaluate → decide, each step recorded with its seconds."""
    from ragtune.adapt import AdaptConfig, adapt
    from ragtune.models.generator import OpenAIGenerator
    from ragtune.synth.filters import FilterConfig
    from ragtune.train.embedder import EmbedderTrainConfig
    from ragtune.train.reranker import RerankerTrainConfig

    chat_server.responder = question_from_prompt
    config = AdaptConfig(filters=FilterConfig(dev_fraction=0.4), teacher="cross-encoder",
                         training=EmbedderTrainConfig(max_steps=2, batch_size=4),
                         reranker=RerankerTrainConfig(max_steps=2, batch_size=8), promote=False)
    steps = []
    report = adapt(scifact, OpenAIGenerator(chat_server.url, model="served"), config, run_name="distil", home=home,
                   on_step=steps.append)
    assert steps == ["queries", "filter", "probes", "tune", "mine", "reranker", "teacher", "train", "shadow", "evaluate",
                     "evaluate probes", "decide"]
    assert set(report["seconds"]) == set(steps)
    tuned = report["steps"]["tune"]  # the settings step ran on the filtered questions, wrote nothing (promote=False)
    assert tuned["applied"] is False and (tuned["ran"] and tuned["questions"] > 0 or "confirm" in tuned["why"])
    assert "Retrieval settings" in (scifact.dir / "adapt" / "distil" / "report.md").read_text()
    assert report["steps"]["train"]["loss"] == "margin-mse" and report["steps"]["reranker"]["gate"]["queries"] > 0
    assert (scifact.dir / "synth" / "distil" / "teacher.cross-encoder.train.jsonl").exists()
    # The reranker taught the embedder, so it does not judge the probes: their source chunks do.
    assert report["steps"]["evaluate probes"]["judged_by"] == "source chunk"
    assert report["steps"]["reranker"]["verdict"]["signals"][0]["name"] in ("probes", "synthetic")
    # promote=False: whatever the verdict, the rerank stage is not switched on.
    assert report["steps"]["reranker"]["applied"] is False and scifact.pipeline.reranker.model is None


def test_adapt_to_a_budget_measures_plans_and_follows_the_plan(scifact, home, chat_server):
    """--budget-minutes: speeds measured on this collection (the probe's queries kept), the query
    set planned to fit, the plan recorded and followed, and a resumed run keeps the same plan."""
    from collections import Counter

    from ragtune.adapt import AdaptConfig, adapt
    from ragtune.data import beir
    from ragtune.models.generator import OpenAIGenerator
    from ragtune.synth.filters import FilterConfig
    from ragtune.train.embedder import EmbedderTrainConfig

    chat_server.responder = question_from_prompt
    config = AdaptConfig(filters=FilterConfig(dev_fraction=0.4), training=EmbedderTrainConfig(max_steps=2, batch_size=4),
                         promote=False, budget_minutes=20)
    steps: list[str] = []
    report = adapt(scifact, OpenAIGenerator(chat_server.url, model="served"), config, run_name="budget", home=home,
                   on_step=steps.append)
    plan = report["plan"]
    assert steps[0] == "plan" and steps[1].startswith("plan: budget 20 min: writer") and steps[2] == "queries"
    assert plan["speeds"]["query_s"] > 0 and plan["speeds"]["encode_per_s"] > 0
    # A fast writer and a small collection: every eligible chunk, several queries each.
    assert plan["chunks"] == plan["eligible_chunks"] and plan["per_chunk"] > 1
    per_chunk = Counter(q["metadata"]["chunk_id"] for q in beir.read_queries(scifact.dir / "synth" / "budget"))
    assert len(per_chunk) == plan["chunks"] and max(per_chunk.values()) == plan["per_chunk"]
    assert (scifact.dir / "adapt" / "budget" / "report.md").read_text().count("Plan: budget 20 min") == 1
    calls = len(chat_server.requests)
    again = adapt(scifact, OpenAIGenerator(chat_server.url, model="served"), config, run_name="budget", home=home)
    assert again["plan"] == plan and len(chat_server.requests) == calls


def test_reranker_trains_from_a_plain_encoder_and_plugs_into_search(scifact, tmp_path):
    from sentence_transformers.cross_encoder import CrossEncoder

    from ragtune.retrieve import Searcher
    from ragtune.train.reranker import RerankerTrainConfig, train_reranker
    from ragtune.types import Principal

    pairs = _pairs(scifact, 16)
    rows = [dict(r, negative_1=pairs[(i + 5) % len(pairs)]["positive"]) for i, r in enumerate(pairs)]
    result = train_reranker("all-MiniLM-L6-v2", rows, tmp_path / "rr", RerankerTrainConfig(max_steps=4, batch_size=8))
    assert result.steps == 4 and np.isfinite(result.train_loss)
    test_pairs = [(r["anchor"], r["positive"]) for r in rows[:3]]
    a = CrossEncoder(str(tmp_path / "rr"), device="cpu").predict(test_pairs)
    b = CrossEncoder(str(tmp_path / "rr"), device="cpu").predict(test_pairs)
    assert np.array_equal(a, b)
    scifact.pipeline.reranker.model = str(tmp_path / "rr")
    scifact.pipeline.reranker.depth = 20
    hits = Searcher(scifact).search(rows[0]["anchor"], Principal(), k=5)
    assert len(hits) == 5 and [h.ranks["rerank"] for h in hits] == [1, 2, 3, 4, 5]


def test_question_writer_adapter_trains_saves_and_loads(local_generator, home):
    import torch

    from ragtune.data.squad import load_squad
    from ragtune.models.adapters import AdapterRegistry
    from ragtune.models.generator import LocalGenerator
    from ragtune.synth.queries import qg_messages, qg_training_examples
    from ragtune.train.generator import GeneratorTrainConfig, train_generator

    examples = qg_training_examples(load_squad(SHARED_DATA / "squad" / "dev-v1.1.json"), limit=8)
    assert len(examples) == 8 and all(e["completion"][0]["content"].endswith("?") for e in examples)
    registry = AdapterRegistry(home)
    with registry.create("qgen") as out:
        result = train_generator(local_generator.path, examples, out,
                                 GeneratorTrainConfig(max_steps=3, batch_size=4, learning_rate=1e-3))
        registry.describe(out, base=local_generator.path, method="lora")
    assert result.steps == 3 and np.isfinite(result.train_loss)
    assert 0 < result.trainable_parameters < result.total_parameters / 50
    assert (registry.path("qgen") / "adapter_config.json").exists() and registry.get("qgen")["size_bytes"] < 20_000_000

    def logits(gen):
        inputs = gen._inputs(qg_messages("The Eiffel Tower was completed in 1889 for the World's Fair."))
        with torch.inference_mode():
            return gen.model(**inputs).logits[0, -1]

    tuned_a = LocalGenerator(local_generator.path, home=home, adapter="qgen")  # by registered name
    tuned_b = LocalGenerator(local_generator.path, adapter=str(registry.path("qgen")))  # by folder
    assert torch.equal(logits(tuned_a), logits(tuned_b))
    assert not torch.allclose(logits(tuned_a), logits(local_generator), atol=1e-4)


def test_synth_and_models_cli_end_to_end(scifact, home, chat_server):
    """The step-by-step commands over a real endpoint (scripted questions), ending in a promotion
    and a rollback through the CLI."""
    from typer.testing import CliRunner

    from ragtune.cli import app

    chat_server.responder = question_from_prompt
    scifact.close()
    runner = CliRunner()
    gen = ["--set", "generator.backend=openai", "--set", f"generator.base_url={chat_server.url}",
           "--set", "generator.model=served"]
    common = ["-c", "sf", "--home", str(home), "--json"]

    def cli(*args):
        out = runner.invoke(app, [*args, *common], catch_exceptions=False)
        assert out.exit_code == 0, out.output
        return json.loads(out.stdout)

    examples = home / "examples.txt"
    examples.write_text("statins dementia risk\nhypoxia tumour growth\n")
    styled = cli("synth", "queries", "--name", "styled", "--max-chunks", "4", "--examples", str(examples), *gen)
    # two keyword examples: every query written is keywords, and the report says how close they came
    assert styled["style"]["examples"]["kinds"] == {"keywords": 1.0} and styled["style"]["kind_overlap"] == 1.0
    assert styled["style"]["written"]["queries"] == 4 and styled["style"]["length_ratio"] > 0
    assert cli("synth", "queries", "--max-chunks", "30", *gen)["candidates"] == 30
    report = cli("synth", "filter", "--dev-fraction", "0.3")
    assert report["kept"] > 0 and report["dev"] > 0
    assert cli("synth", "negatives", "--num", "2")["queries"] == report["train"]
    trained = cli("train", "embedder", "--max-steps", "2", "--batch-size", "8")
    assert trained["version"] == "v1" and trained["method"] == "full"
    assert cli("models", "shadow", "--model", "v1")["version"] == "v2"
    compared = cli("models", "compare", "--version", "v2")
    assert compared["queries"] == report["dev"] and set(compared["metrics"]) == {"v1", "v2"}
    promoted = runner.invoke(app, ["models", "promote", "-c", "sf", "--version", "v2", "--home", str(home)])
    assert promoted.exit_code == 0 and "v1 → v2" in promoted.stdout
    listed = cli("models", "list")
    assert listed["live"] == "v2" and [h["action"] for h in listed["history"]] == ["promote"]
    back = runner.invoke(app, ["models", "rollback", "-c", "sf", "--home", str(home)])
    assert back.exit_code == 0 and "v2 → v1" in back.stdout
    # Two steps of reranker training cannot beat the fused order: the gate measures it on the
    # held-out questions and keeps the rerank stage off even though --apply asked for it.
    rr = cli("train", "reranker", "--max-steps", "2", "--batch-size", "8", "--depth", "10", "--apply")
    assert rr["version"] == "v1" and rr["gate"]["queries"] == report["dev"] and rr["gate"]["depth"] == 10
    assert rr["applied"] == rr["verdict"]["promote"] and rr["gate"]["ms_per_query"] > 0
    assert rr["verdict"]["decided_by"] == "synthetic"  # no probes written here
    from ragtune.collection import Collection

    with Collection.open(home, "sf") as coll:
        assert coll.pipeline.reranker.model == (rr["path"] if rr["applied"] else None)


def test_query_adapter_keeps_document_vectors_and_shares_the_index(scifact, home, tmp_path):
    from sentence_transformers import SentenceTransformer

    from ragtune.adapt import compare_versions
    from ragtune.collection.shadow import build_shadow, promote, rollback
    from ragtune.models.registry import ModelRegistry
    from ragtune.retrieve import Searcher
    from ragtune.train.embedder import EmbedderTrainConfig, train_embedder
    from ragtune.types import Principal

    rows = _pairs(scifact)
    registry = ModelRegistry(home, "embedder", "sf")
    with registry.new_version() as (version, out):
        result = train_embedder("all-MiniLM-L6-v2", rows, out,
                                EmbedderTrainConfig(method="query-adapter", max_steps=4, batch_size=8, learning_rate=1e-2))
        registry.describe(out, method="query-adapter")
    assert result.trainable_parameters == 384 * 384 + 384
    tuned = SentenceTransformer(str(registry.path(version)), device="cpu")
    base = scifact.embedder.model
    docs, queries = [r["positive"] for r in rows[:3]], [r["anchor"] for r in rows[:3]]
    assert np.allclose(tuned.encode_document(docs, normalize_embeddings=True),
                       base.encode(docs, normalize_embeddings=True), atol=1e-5)  # stored vectors stay valid
    assert not np.allclose(tuned.encode_query(queries, normalize_embeddings=True),
                           base.encode(queries, normalize_embeddings=True), atol=1e-3)

    index_dirs = {p.name for p in (scifact.dir / "index").iterdir() if p.is_dir()}
    shadow = build_shadow(scifact, str(registry.path(version)), share_vectors=True)
    assert {p.name for p in (scifact.dir / "index").iterdir() if p.is_dir()} == index_dirs  # nothing copied
    (scifact.dir / "synth").mkdir()
    folder = scifact.dir / "synth" / "q"
    _write_candidates(folder, scifact, [(i, r["anchor"]) for i, r in enumerate(rows)])
    (folder / "qrels").mkdir()
    chunks = scifact.chunks()
    (folder / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"q{i}\t{chunks[i]['chunk_id']}\t1\n" for i in range(len(rows))))
    cmp = compare_versions(scifact, folder, shadow)  # both versions searched in one process, one store
    assert cmp.queries == len(rows) and set(cmp.metrics) == {"v1", shadow}
    # A user's labelled queries judge documents, not chunks: compared at document level.
    labelled = tmp_path / "labelled"
    (labelled / "qrels").mkdir(parents=True)
    (labelled / "corpus.jsonl").write_text("".join(json.dumps({"_id": c["doc_id"], "text": c["text"]}) + "\n" for c in chunks))
    (labelled / "queries.jsonl").write_text("".join(json.dumps({"_id": f"u{i}", "text": r["anchor"]}) + "\n"
                                                    for i, r in enumerate(rows)))
    (labelled / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"u{i}\t{chunks[i]['doc_id']}\t1\n" for i in range(len(rows))))
    by_doc = compare_versions(scifact, labelled, shadow, split="test")
    assert by_doc.queries == len(rows) and by_doc.metrics["v1"]["nDCG@10"] > 0.5  # the doc ids really matched
    promote(scifact, shadow)
    assert scifact.index_dir.name == "v1" and Searcher(scifact).search(queries[0], Principal(), k=3)
    assert rollback(scifact) == "v1"
