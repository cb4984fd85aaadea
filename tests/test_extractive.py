"""Extractive mode: the sentence baseline through the whole answer path, and the span-model
decoding on a tiny randomly initialised QA model built here (the trained reader comes with
the fine-tuning work; this checks the interface and the decoding, not a model's quality)."""

from __future__ import annotations

import json

import pytest
import torch

from ragtune.answer import Answerer
from ragtune.answer.extractive import SentenceReader, SpanReader, sentences
from ragtune.types import Principal

STAFF = Principal("ana", ("staff",))


@pytest.mark.slow
def test_sentence_baseline_answers_with_a_cited_span_and_no_llm(handbook, embedder):
    handbook.pipeline.answer.mode = "extractive"
    answerer = Answerer(handbook, reader=SentenceReader(embedder))
    answer = answerer.ask("How often are laptops replaced?", STAFF)
    assert answer.text == "Laptops are replaced every three years by the IT service desk."
    assert not answer.abstained and [c.doc_id for c in answer.citations] == ["hb/laptops.md"]
    n = answer.citations[0].number
    assert answer.passages[n - 1][answer.span.start:answer.span.end] == answer.span.text
    assert answer.text == " ".join(answer.span.text.split()) and answer.mode == "extractive"
    assert answer.answered_by == "sentence-baseline"
    assert "read" in answer.timings and "generate" not in answer.timings
    streamed = list(answerer.stream("How often are laptops replaced?", STAFF))
    assert streamed[0] == answer.text and streamed[-1].text == answer.text
    # Nothing visible: abstains before reading anything.
    outsider = answerer.ask("How often are laptops replaced?", Principal("outsider"))
    assert outsider.abstained and outsider.abstain_reason == "no_context" and outsider.span is None


def test_extractive_mode_needs_a_reader(tiny_handbook):
    tiny_handbook.pipeline.answer.mode = "extractive"
    with pytest.raises(ValueError, match="needs a reader"):
        Answerer(tiny_handbook)


def test_sentence_splitting_keeps_offsets():
    text = "  Alpha beta. Gamma (delta)!  \n\nEpsilon zeta"
    spans = sentences(text)
    assert [text[s:e] for s, e in spans] == ["Alpha beta.", "Gamma (delta)!", "Epsilon zeta"]


@pytest.fixture(scope="module")
def tiny_qa_model(tmp_path_factory):
    """A 2-layer BERT with a QA head over MiniLM's tokenizer, random weights, saved like a real one."""
    from transformers import AutoTokenizer, BertConfig, BertForQuestionAnswering

    from ragtune.models.loading import resolve_model

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("all-MiniLM-L6-v2"))
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512)
    out = tmp_path_factory.mktemp("tiny-qa")
    BertForQuestionAnswering(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def test_span_reader_returns_real_spans_of_long_passages(tiny_qa_model):
    reader = SpanReader(tiny_qa_model, max_answer_tokens=5, max_length=64, stride=16)
    long = " ".join(f"Sentence {i} says the value is {i * 7}." for i in range(60))  # many windows
    passages = ["Short passage about leave.", long]
    span = reader.read("What is the value?", passages)
    assert span is not None and 1 <= span.passage <= 2
    assert passages[span.passage - 1][span.start:span.end] == span.text and span.text.strip()
    assert reader.count_tokens(span.text) <= 5
    assert span.no_answer_score is not None
    assert reader.read("anything?", []) is None


def test_span_decoding_picks_the_best_valid_pair(tiny_qa_model):
    reader = SpanReader(tiny_qa_model, max_answer_tokens=3)
    start = torch.tensor([0.0, 5.0, 0.0, 0.0, 9.0, 0.0])
    end = torch.tensor([0.0, 0.0, 4.5, 0.0, 0.0, 0.0])
    # context = tokens 1..5; the best start (4) has no good end after it within 3 tokens,
    # so the winner is (1, 2) with 5 + 4.5, not (4, 4) with 9 nor the invalid (4, 2) with 13.5.
    rank, score, i, j = reader._best_in_window(start, end, [1, 2, 3, 4, 5])
    assert (i, j) == (1, 2) and score == rank == 9.5
    end[5] = 1.0  # (4, 5): 9 + 1 = 10 beats it and is within the length limit
    assert reader._best_in_window(start, end, [1, 2, 3, 4, 5])[2:] == (4, 5)


def test_length_prior_favours_the_longer_span_only_when_set(tiny_qa_model):
    start = torch.tensor([0.0, 5.0, 4.0, 0.0, 0.0, 0.0])
    end = torch.tensor([0.0, 0.0, 4.0, 0.0, 0.0, 3.6])
    reader = SpanReader(tiny_qa_model, max_answer_tokens=10)
    assert reader._best_in_window(start, end, [1, 2, 3, 4, 5])[2:] == (1, 2)  # 9.0 beats (1, 5)'s 8.6
    reader.length_prior = 1.0  # + ln(2) = 9.69 against 8.6 + ln(5) = 10.21
    rank, score, i, j = reader._best_in_window(start, end, [1, 2, 3, 4, 5])
    assert (i, j) == (1, 5) and score == pytest.approx(8.6) and rank == pytest.approx(8.6 + torch.log(torch.tensor(5.0)))


def test_spans_of_different_passages_compete_by_their_margin_over_no_answer(tiny_qa_model):
    """Passage 1's logits are all high (its [CLS] too); passage 2's span is lower in raw terms but
    beats its own "no answer" by far more: the reader answers from passage 2."""
    from types import SimpleNamespace

    reader = SpanReader(tiny_qa_model, max_answer_tokens=5)

    def crafted(input_ids, **_):
        start = torch.zeros(input_ids.shape)
        end = torch.zeros(input_ids.shape)
        start[0, :], end[0, :] = 10.0, 10.0  # passage 1: span 20, no answer 20 -> margin 0
        start[1, 0], end[1, 0] = -5.0, -5.0  # passage 2: no answer -10
        start[1, 6], end[1, 6] = 6.0, 6.0  # a one-token span scoring 12 -> margin 22
        return SimpleNamespace(start_logits=start, end_logits=end)

    reader.model = crafted
    span = reader.read("What is it?", ["alpha beta gamma delta epsilon", "zeta eta theta iota kappa"])
    assert span.passage == 2 and span.score == 12.0 and span.no_answer_score == -10.0


def test_null_margin_makes_the_span_reader_abstain(tiny_handbook, tiny_qa_model):
    tiny_handbook.pipeline.answer.mode = "extractive"
    reader = SpanReader(tiny_qa_model)
    tiny_handbook.pipeline.reader.null_margin = -1e9  # any no-answer score beats any span by more than this
    abstained = Answerer(tiny_handbook, reader=reader).ask("How often are laptops replaced?", STAFF)
    assert abstained.abstained and abstained.abstain_reason == "model" and abstained.span is not None
    tiny_handbook.pipeline.reader.null_margin = None
    answered = Answerer(tiny_handbook, reader=reader).ask("How often are laptops replaced?", STAFF)
    assert not answered.abstained and answered.text == answered.span.text and len(answered.citations) == 1


def test_calibrated_null_margin_abstains_as_calibrated(tiny_handbook, tiny_qa_model):
    """The margin `calibrate` stores reproduces, through the answerer's own rule, the answer and
    abstain rates the calibration promised (a sign or offset slip between the two would not)."""
    from statistics import fmean

    from ragtune.answer.abstain import calibrate_reader_margin, reader_margin

    tiny_handbook.pipeline.answer.mode = "extractive"
    answerer = Answerer(tiny_handbook, reader=SpanReader(tiny_qa_model))
    groups = [["How often are laptops replaced?", "How many days of leave?", "When do unused days expire?",
               "Who approves flights?", "When should I book trains?", "Who replaces laptops?"],
              ["Who won the cup?", "What is ethanol?", "How is bread baked?", "Which planet is red?", "Who wrote Hamlet?"]]
    margins = [[reader_margin(answerer.ask(q, STAFF)) for q in g] for g in groups]
    assert all(m is not None for m in margins[0] + margins[1])
    # The tiny reader is random: the group it scores higher plays "answerable".
    hi, lo = sorted(range(2), key=lambda i: -fmean(margins[i]))  # type: ignore[arg-type]
    margin, c = calibrate_reader_margin(margins[hi], margins[lo])
    assert margin is not None and c is not None and c.balanced_accuracy > 0.5
    tiny_handbook.pipeline.reader.null_margin = margin
    answered = [not answerer.ask(q, STAFF).abstained for q in groups[hi]]
    stopped = [answerer.ask(q, STAFF).abstain_reason == "model" for q in groups[lo]]
    assert fmean(answered) == pytest.approx(c.answer_recall) and fmean(stopped) == pytest.approx(c.abstain_recall)
    assert calibrate_reader_margin(margins[hi], margins[lo][:4]) == (None, None)  # too few to say


def test_calibrate_cli_stores_the_reader_margin(tiny_handbook, tiny_qa_model, home, tmp_path):
    from typer.testing import CliRunner

    from ragtune.cli import app
    from ragtune.collection import Collection

    tiny_handbook.pipeline.answer.mode = "extractive"
    tiny_handbook.pipeline.reader.model = str(tiny_qa_model)
    tiny_handbook.save_pipeline()
    tiny_handbook.close()
    # The same lines on both sides: the random tiny models cannot tell them apart, so every question passes
    # retrieval and reaches the reader (plumbing only; the margin's meaning is tested above).
    questions = "\n".join(f"How often are laptops of team {i} replaced?" for i in range(6))
    (tmp_path / "ans.txt").write_text(questions)
    (tmp_path / "off.txt").write_text(questions)
    out = CliRunner().invoke(app, ["calibrate", "-c", "hb", "--group", "staff", "--answerable", str(tmp_path / "ans.txt"),
                                   "--unanswerable", str(tmp_path / "off.txt"), "--apply", "--json", "--home", str(home)],
                             catch_exceptions=False)
    result = json.loads(out.stdout)
    stored = Collection.open(home, "hb")
    assert result["reader"]["n_answerable"] == result["reader"]["n_unanswerable"] == 6
    assert stored.pipeline.reader.null_margin == pytest.approx(result["reader_null_margin"], abs=1e-4)
    assert stored.pipeline.answer.min_retrieval_confidence == pytest.approx(result["threshold"], abs=1e-4)
    stored.close()


@pytest.mark.slow
def test_ask_cli_extractive_json(handbook, home):
    from typer.testing import CliRunner

    from ragtune.cli import app

    handbook.close()
    out = CliRunner().invoke(app, ["ask", "When do unused leave days expire?", "-c", "hb", "--group", "staff", "--json",
                                   "--set", "answer.mode=extractive", "--home", str(home)], catch_exceptions=False)
    data = json.loads(out.stdout)
    assert data["text"] == "Unused days expire in March." and data["span"]["passage"] == 1
    assert data["citations"][0]["doc_id"] == "hb/leave.md"


def test_a_trained_reader_brings_its_own_span_cap(tiny_qa_model, tmp_path):
    """The span cap comes from the answers the reader trained on: a fixed 30 tokens cut off a quarter
    of COVID-QA's answers. A model without the record (a hub model) keeps the floor."""
    import json
    import shutil

    from ragtune.answer.extractive import READER_META
    from ragtune.data.squad import QAExample
    from ragtune.train.reader import answer_tokens_p99

    assert SpanReader(tiny_qa_model).max_answer_tokens == 30
    long_answers = [QAExample(str(i), "Why?", "x", [" ".join(["word"] * (40 + i))], [0]) for i in range(100)]
    tokenizer = SpanReader(tiny_qa_model).tokenizer
    assert answer_tokens_p99(tokenizer, long_answers) == 139  # 99th of 40..139 "word" tokens
    folder = tmp_path / "reader"
    shutil.copytree(tiny_qa_model, folder)
    (folder / READER_META).write_text(json.dumps({"answer_tokens_p99": 90}))
    assert SpanReader(folder).max_answer_tokens == 90
    assert SpanReader(folder, max_answer_tokens=12).max_answer_tokens == 12  # the config still wins
    (folder / READER_META).write_text(json.dumps({"answer_tokens_p99": 4}))
    assert SpanReader(folder).max_answer_tokens == 30


def test_answer_unit_sentence_answers_with_the_sentence_around_the_span(tiny_handbook, tiny_qa_model):
    tiny_handbook.pipeline.answer.mode = "extractive"
    reader = SpanReader(tiny_qa_model)
    span_answer = Answerer(tiny_handbook, reader=reader).ask("How often are laptops replaced?", STAFF)
    tiny_handbook.pipeline.reader.answer_unit = "sentence"
    try:
        sentence_answer = Answerer(tiny_handbook, reader=reader).ask("How often are laptops replaced?", STAFF)
    finally:
        tiny_handbook.pipeline.reader.answer_unit = "span"
    span = sentence_answer.span
    assert span is not None and sentence_answer.text == " ".join(span.sentence.split())
    assert " ".join(span.text.split()) in sentence_answer.text and span_answer.text == " ".join(span.text.split())
    assert len(sentence_answer.text) >= len(span_answer.text) and sentence_answer.citations


def test_extractive_answers_read_the_retrieved_chunks_generative_ones_their_sections(tmp_path, make_tiny_collection,
                                                                                     tiny_qa_model):
    """``answer.use_parents`` unset: a span reader reads the chunks search found (a whole section
    distracts it), a generator the parent sections; set, it holds for both."""
    from ragtune.ingest.sync import ingest
    from ragtune.types import Acl

    coll = make_tiny_collection("long", ["chunking.chunk_size=24", "chunking.chunk_overlap=0", "chunking.parent_size=400"])
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "policy.md").write_text("# Policy\n\n" + " ".join(
        f"Rule {i} says that laptops of team {i} are replaced after {i + 2} years of service." for i in range(12)))
    ingest(coll, folder, Acl(groups=("staff",)))
    coll.pipeline.answer.mode = "extractive"
    answer = Answerer(coll, reader=SpanReader(tiny_qa_model)).ask("When are laptops of team 7 replaced?", STAFF)
    assert answer.passages and answer.passages == [h.text.strip() for h in answer.hits][:len(answer.passages)]
    assert all(h.parent_text and h.parent_text.strip() != h.text.strip() for h in answer.hits)
    coll.pipeline.answer.use_parents = True
    sections = Answerer(coll, reader=SpanReader(tiny_qa_model)).ask("When are laptops of team 7 replaced?", STAFF)
    assert sections.passages[0] == sections.hits[0].parent_text.strip()


def test_the_served_reader_gate_reads_what_search_returns(tiny_handbook):
    """Gold-context reading sees only the question's own passage; the served gate searches, reads the
    top-k chunks and applies the collection's cuts, as `ask` does."""
    from ragtune.data.squad import QAExample
    from ragtune.evaluate.reader import per_question, reader_gate, served_per_question

    tiny_handbook.pipeline.answer.k = 1
    held = [QAExample("q1", "How often are laptops replaced?", "The canteen opens at noon on weekdays.",
                      ["every three years"]),
            QAExample("q2", "When do unused leave days expire?", "Parking is free for visitors.", ["in March"])]
    reader = SentenceReader(tiny_handbook.embedder)
    assert all(s["F1"] == 0.0 for s in per_question(reader, held).values())  # own passages lack the answers
    served = served_per_question(tiny_handbook, reader, held)
    assert all(s["F1"] > 0.3 for s in served.values())  # search finds the pages that hold them
    gate = reader_gate(reader, reader, held, collection=tiny_handbook)
    assert gate.read == "served" and gate.candidate_scores["F1"] > 0.3 and not gate.enable
    tiny_handbook.pipeline.answer.min_retrieval_confidence = 2.0  # no cosine reaches it: the served path abstains
    assert all(s["F1"] == 0.0 for s in served_per_question(tiny_handbook, reader, held).values())
