"""The answer step: packing within budget, citations, abstention without context, streaming,
the CLI, with the real local model and with an OpenAI-compatible endpoint over real HTTP."""

from __future__ import annotations

import json

import pytest

from conftest import NeverCalled
from ragtune.answer import Answer, Answerer
from ragtune.answer.citations import cited_numbers
from ragtune.answer.prompt import build_messages, context_budget, pack_passages
from ragtune.config import AnswerConfig
from ragtune.models.generator import OpenAIGenerator
from ragtune.types import Principal

@pytest.mark.slow
def test_passages_fit_the_budget_with_the_real_tokenizer(handbook, local_generator):
    hits = Answerer(handbook, local_generator).searcher.search("leave and travel", Principal("a", ("staff",)), k=3)
    count = local_generator.count_tokens
    full = pack_passages(hits, 10_000, count)
    assert len(full) == 3 and [p.number for p in full] == [1, 2, 3]
    one_fits = count(f"[1] {full[0].text}\n\n") + 1
    packed = pack_passages(hits, one_fits, count)
    assert len(packed) == 1 and sum(count(f"[{p.number}] {p.text}\n\n") for p in packed) <= one_fits
    cfg = AnswerConfig(max_context_tokens=None, max_new_tokens=100)
    budget = context_budget(cfg, 400, count, "q?")
    assert 0 < budget < 400 - 100
    messages = build_messages("q?", pack_passages(hits, budget, count), cfg)
    assert sum(count(m["content"]) for m in messages) <= 400 - 100


@pytest.mark.slow
def test_local_model_answers_from_context_and_streams(handbook, local_generator):
    answerer = Answerer(handbook, local_generator)
    staff = Principal("ana", ("staff",))
    answer = answerer.ask("How many days of paid annual leave do employees get?", staff)
    assert answer.passages and answer.hits[0].doc_id == "hb/leave.md"
    assert set(answer.timings) == {"rewrite", "retrieve", "prompt", "generate", "ground"}
    assert answer.tokens["completion"] > 0 and answer.mode == "generative" and answer.groundedness is not None
    assert answer.queries == ["How many days of paid annual leave do employees get?"]  # plain strategy
    assert all(1 <= c.number <= len(answer.passages) for c in answer.citations)
    pieces = list(answerer.stream("How many days of paid annual leave do employees get?", staff))
    final = pieces[-1]
    assert isinstance(final, Answer) and all(isinstance(p, str) for p in pieces[:-1])
    assert final.text == answer.text  # greedy: same text either way
    if not final.unsupported:  # the guard kept every sentence: what was streamed is the answer
        assert "".join(pieces[:-1]).strip() == final.text


def test_no_visible_context_abstains_without_calling_the_model(tiny_handbook):
    answer = Answerer(tiny_handbook, NeverCalled("the model must not be asked without context")).ask("How many leave days?", Principal("outsider"))
    assert answer.abstained and answer.abstain_reason == "no_context" and answer.text == "I don't know"
    assert answer.hits == [] and answer.citations == []


def test_citations_map_to_documents_and_bad_numbers_are_dropped(tiny_handbook, chat_server):
    chat_server.replies += ["Employees get 25 days [1], see also [2, 9]."]
    gen = OpenAIGenerator(chat_server.url, model="served")
    answer = Answerer(tiny_handbook, gen).ask("How many leave days?", Principal("ana", ("staff",)))
    assert not answer.abstained
    assert [c.number for c in answer.citations] == [1, 2]
    assert answer.citations[0].doc_id == answer.hits[0].doc_id == "hb/leave.md"
    prompt = chat_server.requests[-1]["messages"]
    assert prompt[0]["role"] == "system" and "I don't know" in prompt[0]["content"]
    assert "[1] # Leave" in prompt[-1]["content"] and "Question: How many leave days?" in prompt[-1]["content"]
    chat_server.replies += ["I don't know."]
    abstained = Answerer(tiny_handbook, gen).ask("Who founded the company?", Principal("ana", ("staff",)))
    assert abstained.abstained and abstained.abstain_reason == "model" and abstained.citations == []


def test_grounding_guard_drops_unsupported_sentences_and_falls_back(tiny_handbook, chat_server):
    from ragtune.answer.extractive import SentenceReader

    staff = Principal("ana", ("staff",))
    gen = OpenAIGenerator(chat_server.url, model="served")
    chat_server.replies += ["Employees get 25 days of paid leave [1]. Each employee also gets a company car [1]."]
    answer = Answerer(tiny_handbook, gen).ask("How many leave days?", staff)
    assert answer.text == "Employees get 25 days of paid leave [1]." and answer.mode == "generative"
    assert answer.unsupported == ["Each employee also gets a company car [1]."] and answer.groundedness == 0.5
    assert [c.doc_id for c in answer.citations] == ["hb/leave.md"]

    # Mostly made up (one sentence of three supported): not trusted on the one either.
    chat_server.replies += ["Employees get 25 days of paid leave [1]. Each employee gets a company car [1]. "
                            "Cars are replaced yearly [1]."]
    distrusted = Answerer(tiny_handbook, gen).ask("How many leave days?", staff)
    assert distrusted.abstained and distrusted.abstain_reason == "ungrounded"
    assert distrusted.groundedness == pytest.approx(1 / 3) and len(distrusted.unsupported) == 2

    # A figure the passages do not state: nothing is left, so the reader's cited sentence answers.
    chat_server.replies += ["Employees get 40 days of leave [1]."]
    reader = SentenceReader(tiny_handbook.embedder)
    fallback = Answerer(tiny_handbook, gen, reader=reader, config=tiny_handbook.pipeline.answer.model_copy(
        update={"mode": "generative"})).ask("How many leave days?", staff)
    assert fallback.mode == "extractive" and fallback.answered_by == "sentence-baseline"
    # (the tiny random embedder picks the sentence; what matters is that it is copied and cited)
    assert fallback.groundedness == 0.0 and fallback.citations and "40 days" not in fallback.text
    assert fallback.text in fallback.passages[fallback.citations[0].number - 1]
    # The question handed back, or a name the passages never mention: no answer either.
    for invented in ["How many leave days are there [1]?", "Employees get paid leave from Hempelenidine Holdings [1]."]:
        chat_server.replies += [invented]
        echoed = Answerer(tiny_handbook, gen).ask("How many leave days?", staff)
        assert echoed.abstained and echoed.abstain_reason == "ungrounded" and echoed.unsupported == [invented]
    # ... and with no reader to fall back to, "I don't know".
    chat_server.replies += ["Employees get 40 days of leave [1]."]
    refused = Answerer(tiny_handbook, gen).ask("How many leave days?", staff)
    assert refused.abstained and refused.abstain_reason == "ungrounded" and refused.text == "I don't know"
    # The guard can be switched off.
    chat_server.replies += ["Employees get 40 days of leave [1]."]
    off = tiny_handbook.pipeline.answer.model_copy(update={"grounding": "off"})
    assert Answerer(tiny_handbook, gen, config=off).ask("How many leave days?", staff).text == \
        "Employees get 40 days of leave [1]."


def test_auto_mode_answers_extractively_with_the_packaged_model_only(tiny_handbook, chat_server):
    from ragtune.config import GeneratorConfig

    auto = tiny_handbook.pipeline.answer
    assert auto.mode == "auto" and auto.resolved_mode(GeneratorConfig()) == "extractive"
    assert auto.resolved_mode(GeneratorConfig(adapter="my-lora")) == "generative"
    assert auto.resolved_mode(GeneratorConfig(model="Qwen/Qwen2.5-7B-Instruct")) == "generative"
    tiny_handbook.pipeline.generator = GeneratorConfig()
    answer = Answerer.from_pipeline(tiny_handbook).ask("How many leave days?", Principal("ana", ("staff",)))
    assert answer.mode == "extractive" and answer.answered_by == "sentence-baseline"
    assert answer.citations and answer.text in answer.passages[answer.citations[0].number - 1]
    assert answer.span is not None and answer.span.sentence == answer.span.text


def test_ask_cli_through_an_openai_compatible_endpoint(tiny_handbook, chat_server, home):
    from typer.testing import CliRunner

    from ragtune.cli import app

    tiny_handbook.close()  # the CLI opens the collection itself
    chat_server.replies += ["Trains for trips under four hours [1].", "Trains [1]."]
    sets = ["--set", "generator.backend=openai", "--set", f"generator.base_url={chat_server.url}",
            "--set", "generator.model=served", "--home", str(home)]
    out = CliRunner().invoke(app, ["ask", "How should I travel?", "-c", "hb", "--group", "staff", "--json", *sets],
                             catch_exceptions=False)
    data = json.loads(out.stdout)
    assert data["text"] == "Trains for trips under four hours [1]." and data["citations"][0]["doc_id"] == "hb/travel.md"
    streamed = CliRunner().invoke(app, ["ask", "How should I travel?", "-c", "hb", "--group", "staff", "--stream", *sets],
                                  catch_exceptions=False)
    assert streamed.stdout.startswith("Trains [1].") and "Sources:" in streamed.stdout and "hb/travel.md" in streamed.stdout


def test_cited_numbers_forms():
    assert cited_numbers("a [1][3] b [2,3] c [10]", 3) == [1, 3, 2]
    assert cited_numbers("no citations", 3) == []


@pytest.mark.slow
def test_calibrated_confidence_threshold_abstains_off_topic(handbook, chat_server, home, tmp_path):
    from typer.testing import CliRunner

    from ragtune.answer.abstain import calibrate_threshold
    from ragtune.cli import app
    from ragtune.collection import Collection

    with pytest.raises(ValueError, match="both answerable and unanswerable"):
        calibrate_threshold([0.5], [])
    assert calibrate_threshold([0.8, 0.9], [0.1, 0.2]).balanced_accuracy == 1.0

    handbook.close()
    (tmp_path / "ans.txt").write_text("How much annual leave do staff get?\nWhen do unused leave days expire?\n"
                                      "Can I take a flight for work?\nHow often are laptops replaced?\n")
    (tmp_path / "off.jsonl").write_text("\n".join(json.dumps({"question": q}) for q in [
        "Who won the football world cup in 1998?", "What is the boiling point of ethanol?",
        "How do I bake sourdough bread?", "Which planet has the most moons?"]))
    out = CliRunner().invoke(app, ["calibrate", "-c", "hb", "--group", "staff", "--answerable", str(tmp_path / "ans.txt"),
                                   "--unanswerable", str(tmp_path / "off.jsonl"), "--apply", "--json", "--home", str(home)],
                             catch_exceptions=False)
    result = json.loads(out.stdout)
    assert result["balanced_accuracy"] >= 0.75 and result["applied"]
    assert result["reader_null_margin"] is None  # the sentence baseline has no no-answer score

    coll = Collection.open(home, "hb")
    assert coll.pipeline.answer.min_retrieval_confidence == pytest.approx(result["threshold"], abs=1e-4)
    staff = Principal("ana", ("staff",))
    chat_server.replies += ["Laptops are replaced every three years [1]."]
    gen = OpenAIGenerator(chat_server.url, model="served")
    calls = len(chat_server.requests)
    # Held-out questions, phrased unlike the calibration ones.
    off = Answerer(coll, gen).ask("What is the tallest mountain in Africa?", staff)
    assert off.abstained and off.abstain_reason == "low_confidence" and off.confidence < result["threshold"]
    assert len(chat_server.requests) == calls, "abstained before calling the model"
    on = Answerer(coll, gen).ask("Who replaces laptops and how often?", staff)
    assert not on.abstained and on.confidence >= result["threshold"] and on.citations[0].doc_id == "hb/laptops.md"
    coll.close()


COMPOUND = "How many days of annual leave do employees get, and how often are laptops replaced?"


def test_decomposition_searches_each_sub_question_and_merges(tiny_handbook, chat_server):
    from ragtune.retrieve.strategies import expand

    tiny_handbook.pipeline.query.strategy = "decompose"
    chat_server.replies += ["1. How many days of annual leave do employees get?\n2. How often are laptops replaced?",
                            "Employees get 25 days [1]; laptops are replaced every three years [2]."]
    gen = OpenAIGenerator(chat_server.url, model="served")
    answer = Answerer(tiny_handbook, gen).ask(COMPOUND, Principal("ana", ("staff",)), k=2)
    assert answer.queries == [COMPOUND, "How many days of annual leave do employees get?", "How often are laptops replaced?"]
    assert {h.doc_id for h in answer.hits} == {"hb/leave.md", "hb/laptops.md"}
    assert "Split the question" in chat_server.requests[-2]["messages"][0]["content"]
    # Unusable rewrites (chatter, or an error from the model) fall back to the question alone.
    chat_server.replies += ["Sure, happy to help with that!"]
    assert expand(COMPOUND, "multi_query", gen) == [COMPOUND]
    assert expand(COMPOUND, "decompose", OpenAIGenerator("http://127.0.0.1:9/v1", "m", timeout=1, max_retries=0)) == [COMPOUND]


@pytest.mark.slow
def test_strategies_degrade_gracefully_with_the_local_model(handbook, local_generator):
    from ragtune.retrieve.strategies import expand

    for strategy in ("decompose", "multi_query"):
        queries = expand(COMPOUND, strategy, local_generator, limit=3)
        assert queries[0] == COMPOUND and 1 <= len(queries) <= 4
        assert all(q.endswith("?") and q.strip() == q for q in queries)
    handbook.pipeline.query.strategy = "decompose"
    handbook.pipeline.answer.max_new_tokens = 24
    answer = Answerer(handbook, local_generator).ask(COMPOUND, Principal("ana", ("staff",)), k=3)
    assert answer.hits and answer.queries[0] == COMPOUND
