"""LLM customisation (issue 6): every fine-tuning method on the real SmolLM2, RAG-shaped training
data, the adapter registry and its CLI, merging, and the extractive reader."""

from __future__ import annotations

import json
import re

import pytest
import torch

from conftest import SHARED_DATA, run_cli

pytestmark = pytest.mark.slow

SQUAD = SHARED_DATA / "squad" / "dev-v1.1.json"


@pytest.fixture(scope="module")
def qg_rows():
    """Four short prompt/completion rows (passage → question): a few seconds per training step."""
    from ragtune.data.squad import load_squad
    from ragtune.synth.queries import qg_training_examples

    return qg_training_examples(load_squad(SQUAD), limit=4)


def _logits(model, tokenizer, text: str = "Passage: The Eiffel Tower opened in 1889.\nQuestion:"):
    enc = tokenizer(text, return_tensors="pt")
    with torch.inference_mode():
        return model(**enc).logits[0, -1].float()


@pytest.mark.parametrize("method", ["lora", "qlora", "ia3", "prompt-tuning", "p-tuning", "prefix", "full"])
def test_method_lowers_loss_and_reloads_identically(method, qg_rows, local_generator, tmp_path):
    from peft import PeftModel

    from ragtune.models.generator import LocalGenerator
    from ragtune.train.generator import GeneratorTrainConfig, train_generator
    from ragtune.train.methods import get_method

    out = tmp_path / method
    config = GeneratorTrainConfig(method=method, max_steps=4, batch_size=4, max_length=384)
    result = train_generator(local_generator.path, qg_rows, out, config, eval_examples=qg_rows)
    assert result.steps == 4
    assert result.metrics["eval_loss_after"] < result.metrics["eval_loss_before"], result.metrics
    if method == "full":
        assert result.trainable_parameters == result.total_parameters
    else:  # parameter-efficient: a small fraction trains
        assert 0 < result.trainable_parameters < result.total_parameters / 20

    trained = result.model.eval()
    if get_method(method).quantized:  # same 4-bit base, reloaded from disk
        base = get_method(method).load_base(local_generator.path, "cpu")
        reloaded = PeftModel.from_pretrained(base, str(out)).eval()
    else:  # the answering path's own loader, by folder
        reloaded = LocalGenerator(local_generator.path, adapter=str(out)).model
    tok = local_generator.tokenizer
    assert torch.allclose(_logits(trained, tok), _logits(reloaded, tok), atol=1e-5)
    assert not torch.allclose(_logits(reloaded, tok), _logits(local_generator.model, tok), atol=1e-4)


def test_unknown_method_and_option_are_clear_errors():
    from ragtune.train.generator import GeneratorTrainConfig

    with pytest.raises(ValueError, match="unknown fine-tuning method 'lorra'.*lora"):
        GeneratorTrainConfig(method="lorra")
    with pytest.raises(ValueError, match="dpo is a preference objective.*train preferences --objective dpo"):
        GeneratorTrainConfig(method="dpo")
    with pytest.raises(ValueError, match="no option.*'rank'.*'r'"):
        GeneratorTrainConfig(method="lora", options={"rank": 8})
    with pytest.raises(ValueError, match="'r'.*not a valid int"):
        GeneratorTrainConfig(method="lora", options={"r": "eight"})
    with pytest.raises(ValueError, match="top_layers must be 0.*not -2"):
        GeneratorTrainConfig(method="lora", options={"top_layers": "-2"})


def test_lora_on_the_top_layers_trains_only_those_and_still_learns(qg_rows, local_generator, tmp_path):
    from ragtune.train.generator import GeneratorTrainConfig, train_generator
    from ragtune.train.methods.lora.config import layer_count

    total = layer_count(local_generator.path)
    # a higher rate than the default: two layers of adapters move the loss little in four steps
    config = GeneratorTrainConfig(max_steps=4, batch_size=4, max_length=384, learning_rate=1e-3,
                                  options={"top_layers": 2})
    result = train_generator(local_generator.path, qg_rows, tmp_path / "top", config, eval_examples=qg_rows)
    assert result.metrics["eval_loss_after"] < result.metrics["eval_loss_before"], result.metrics
    layers = {int(m.group(1)) for n, p in result.model.named_parameters() if p.requires_grad
              for m in [re.search(r"layers\.(\d+)\.", n)] if m}
    assert layers == {total - 2, total - 1}
    every = GeneratorTrainConfig(max_steps=1, batch_size=4, max_length=384)
    assert result.trainable_parameters * (total // 2) == train_generator(
        local_generator.path, qg_rows, tmp_path / "all", every).trainable_parameters


def test_merged_lora_equals_the_adapter_and_registry_cli_round_trip(qg_rows, local_generator, home, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from ragtune.models.adapters import AdapterRegistry
    from ragtune.train.merge import merge_adapter
    from ragtune.train.generator import GeneratorTrainConfig, train_generator

    registry = AdapterRegistry(home)
    for name, method in (("qa-lora", "lora"), ("qa-prompt", "prompt-tuning")):
        with registry.create(name) as out:
            r = train_generator(local_generator.path, qg_rows, out, GeneratorTrainConfig(method=method, max_steps=2,
                                                                                       batch_size=4, max_length=384))
            registry.describe(out, base=local_generator.path, method=method, trainable_parameters=r.trainable_parameters)

    merged_dir = merge_adapter("qa-lora", tmp_path / "merged", home)
    merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32).eval()
    base = AutoModelForCausalLM.from_pretrained(local_generator.path, dtype=torch.float32)
    adapter = PeftModel.from_pretrained(base, str(registry.path("qa-lora"))).eval()
    tok = local_generator.tokenizer
    assert torch.allclose(_logits(merged, tok), _logits(adapter, tok), atol=1e-4)
    with pytest.raises(ValueError, match="virtual tokens.*cannot be merged"):
        merge_adapter("qa-prompt", tmp_path / "nope", home)

    listed = json.loads(run_cli("adapters", "list", "--json", home=home).stdout)
    assert {a["name"]: a["method"] for a in listed} == {"qa-lora": "lora", "qa-prompt": "prompt-tuning"}
    assert all(a["size_bytes"] > 0 for a in listed)
    shown = json.loads(run_cli("adapters", "show", "qa-prompt", home=home).stdout)
    assert shown["trainable_parameters"] == r.trainable_parameters
    run_cli("adapters", "delete", "qa-prompt", "--yes", home=home)
    assert [a["name"] for a in registry.list()] == ["qa-lora"]
    missing = run_cli("adapters", "show", "qa-prompt", home=home, check=False)
    assert missing.returncode == 2 and "no adapter 'qa-prompt'" in missing.stderr and "qa-lora" in missing.stderr


def _squad_slice(n_articles: int = 3, per_article: int = 6) -> list:
    from ragtune.data.squad import load_squad

    by_article: dict[str, list] = {}
    for ex in load_squad(SQUAD):
        group = by_article.setdefault(ex.article_id, [])
        if len(group) < per_article and (not group or ex.paragraph_index == group[0].paragraph_index + len(group) % 2):
            group.append(ex)
        if len(by_article) > n_articles:
            break
    return [ex for group in list(by_article.values())[:n_articles] for ex in group]


def test_rag_sft_examples_are_the_answer_prompt_with_a_cited_gold_passage(make_collection, home, local_generator):
    from ragtune.answer.prompt import build_messages
    from ragtune.ingest.datasets import index_contexts
    from ragtune.evaluate.qa import ABSTAIN, normalize_answer
    from ragtune.synth.sft import SFTDataConfig, SFTDataReport, rag_sft_examples

    examples = _squad_slice()
    coll = make_collection("sq", ["answer.k=3"])
    index_contexts(coll, examples, "sq", home)
    report = SFTDataReport()
    rows = rag_sft_examples(coll, examples, local_generator.count_tokens, local_generator.context_window,
                            SFTDataConfig(unanswerable_fraction=0.3, seed=1), report=report)
    assert report.examples == len(rows) == len(examples) and report.unanswerable > 0 and report.answerable > 0
    by_id = {ex.id: ex for ex in examples}
    positions = set()
    for row in rows:
        ex = by_id[row["id"]]
        prompt = row["prompt"]
        assert [m["role"] for m in prompt] == [m["role"] for m in build_messages("q", [], coll.pipeline.answer)]
        user = prompt[-1]["content"]
        assert ex.question in user
        target = row["completion"][0]["content"]
        if target == ABSTAIN:  # the gold context was withheld: no passage holds the answer
            assert not any(normalize_answer(a) in normalize_answer(user) for a in ex.answers)
            continue
        answer, number = target.rsplit(" [", 1)
        number = int(number.rstrip("]"))
        positions.add(number)
        assert answer == ex.answers[0]
        passage = user.split(f"[{number}] ", 1)[1].split(f"\n\n[{number + 1}] ", 1)[0]
        assert ex.answers[0] in passage  # the cited passage really holds the answer
    assert len(positions) > 1  # the gold passage is not always [1]


def _write_squad(examples: list, path):
    data: dict = {"version": "1.1", "data": []}
    for ex in examples:
        data["data"].append({"title": ex.title, "paragraphs": [{"context": ex.context, "document_id": ex.article_id, "qas": [
            {"id": ex.id, "question": ex.question,
             "answers": [{"text": a, "answer_start": s} for a, s in zip(ex.answers, ex.answer_starts)]}]}]})
    path.write_text(json.dumps(data))
    return path


def test_train_qgen_cli_tracks_held_out_loss_and_resumes_from_its_checkpoint(home, local_generator, tmp_path):
    squad = str(_write_squad(_squad_slice(), tmp_path / "mini-squad.json"))
    ckpt = tmp_path / "ckpt"
    common = ["train", "qgen", "--squad", squad, "--base", str(local_generator.path), "--batch-size", "2",
              "--held-out", "0.34", "--eval-every", "1", "--checkpoint-dir", str(ckpt), "--checkpoint-every", "1",
              "--option", "top_layers=2", "--json"]
    bad = run_cli(*common[:-1], "--name", "w0", "--held-out", "1", home=home, check=False)
    assert bad.returncode == 2 and "--held-out must be" in bad.stderr
    first = json.loads(run_cli(*common, "--name", "w1", "--max-steps", "2", home=home).stdout)
    assert first["steps"] == 2 and first["hyperparameters"]["options"]["top_layers"] == 2
    assert first["held_out_examples"] > 0 and "resumed_from" not in first
    assert [p["step"] for p in first["curve"]] == [0, 1, 2]
    assert first["eval_loss_before"] == pytest.approx(first["curve"][0]["eval_loss"], abs=1e-4)
    assert (ckpt / "checkpoint-2").is_dir()
    # a longer run on the same checkpoints continues from step 2: one more step, the curve goes on
    second = json.loads(run_cli(*common, "--name", "w2", "--max-steps", "3", home=home).stdout)
    assert second["steps"] == 3 and second["resumed_from"].endswith("checkpoint-2")
    assert [p["step"] for p in second["curve"]] == [0, 1, 2, 3]
    assert second["eval_loss_before"] == pytest.approx(first["eval_loss_before"], abs=1e-4)  # from the curve


def test_train_generator_cli_and_ask_with_the_adapter(make_collection, home, local_generator, tmp_path):
    examples = _squad_slice()
    path = _write_squad(examples, tmp_path / "mini-squad.json")
    make_collection("sq", ["answer.k=3", f"generator.model={local_generator.path}"]).close()

    bad = run_cli("train", "generator", "-c", "sq", "--data", str(path), "--name", "x", "--method", "lora",
                  "--option", "rank=4", home=home, check=False)
    assert bad.returncode == 2 and "no option(s) ['rank']" in bad.stderr
    meta = json.loads(run_cli("train", "generator", "-c", "sq", "--data", str(path), "--name", "sq-ia3",
                              "--method", "ia3", "--max-steps", "2", "--batch-size", "4", "--eval-fraction", "0.34",
                              "--json", home=home).stdout)
    assert meta["method"] == "ia3" and meta["steps"] == 2 and meta["eval_articles"] == 1
    assert meta["examples"] + meta["eval_examples"] == len(examples)
    assert meta["eval_loss_after"] < meta["eval_loss_before"]
    assert meta["hyperparameters"]["learning_rate"] == 3e-3  # the method's default

    answer = json.loads(run_cli("ask", examples[0].question, "-c", "sq", "--adapter", "sq-ia3", "--json",
                                "--set", "answer.max_new_tokens=12", home=home).stdout)
    assert answer["passages"] and answer["text"]
    unknown = run_cli("ask", "q?", "-c", "sq", "--adapter", "nope", home=home, check=False)
    assert unknown.returncode == 2 and "no adapter 'nope'" in unknown.stderr


def _one_question_per_paragraph(n_articles: int, per_article: int) -> list:
    from ragtune.data.squad import load_squad

    by_article: dict[str, dict[int, object]] = {}
    for ex in load_squad(SQUAD):
        if len(by_article) == n_articles and ex.article_id not in by_article:
            break
        paragraphs = by_article.setdefault(ex.article_id, {})
        if len(paragraphs) < per_article:
            paragraphs.setdefault(ex.paragraph_index, ex)
    return [ex for paragraphs in by_article.values() for ex in paragraphs.values()]


def test_reader_training_learns_spans_on_held_out_articles_and_resumes(tmp_path):
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    from ragtune.answer.extractive import SpanReader
    from ragtune.data.squad import split_by_article
    from ragtune.evaluate.reader import reading_scores
    from ragtune.models.loading import resolve_model
    from ragtune.train.reader import ReaderTrainConfig, reader_features, train_reader

    train, held = split_by_article(_one_question_per_paragraph(n_articles=6, per_article=10), 0.34)
    ckpt = tmp_path / "ckpt"
    # A fresh span head on 40 questions: lr 3e-4 for 36 steps moves held-out F1 clearly (24 steps at
    # 1e-4 sat within noise of the untrained head and failed now and then).
    config = ReaderTrainConfig(max_steps=36, batch_size=8, learning_rate=3e-4, eval_every=12, checkpoint_every=12,
                               no_answer_fraction=0.5)
    result = train_reader("all-MiniLM-L6-v2", train, tmp_path / "reader", config,
                          evaluate=lambda reader: reading_scores(reader, held), checkpoint_dir=ckpt)
    assert result.metrics["answer_windows"] >= len(train) * 0.9
    # the span cap it will read with: its training answers' length (short here), at least 30 tokens
    assert json.loads((tmp_path / "reader" / "ragtune-reader.json").read_text())["answer_tokens_p99"] == 30
    assert len(result.metrics["curve"]) == 4 and result.metrics["curve"][-1]["step"] == 36
    # Questions about articles it never saw: better than the untrained head (a few steps only:
    # benchmarks/answers.py trains it to convergence).
    after, before = result.metrics["after"], result.metrics["before"]
    assert after["F1"] > before["F1"] and after["EM"] >= before["EM"]  # the untrained head is a random init

    tok = AutoTokenizer.from_pretrained(tmp_path / "reader")
    rows = reader_features(tok, train, config)
    assert sum(1 for r in rows if r["start_positions"] == 0) >= len(train) * 0.3  # unanswerable pairs
    assert all(r["input_ids"][-1] != tok.pad_token_id for r in rows)  # padded per batch, not to max_length

    def loss(model) -> float:
        batch = tok.pad([{k: r[k] for k in r} for r in rows], return_tensors="pt")
        with torch.inference_mode():
            return float(model(**batch).loss)

    untrained = AutoModelForQuestionAnswering.from_pretrained(resolve_model("all-MiniLM-L6-v2"))
    trained = AutoModelForQuestionAnswering.from_pretrained(tmp_path / "reader")
    assert loss(trained) < loss(untrained) - 1.0
    span = SpanReader(tmp_path / "reader").read(train[0].question, [train[0].context])
    assert span is not None and span.text and span.text in train[0].context and span.text in span.sentence

    # Run again with more steps: it resumes from the step-36 checkpoint and continues the curve.
    longer = ReaderTrainConfig(**{**config.__dict__, "max_steps": 42, "eval_every": 6})
    again = train_reader("all-MiniLM-L6-v2", train, tmp_path / "reader2", longer,
                         evaluate=lambda reader: reading_scores(reader, held), checkpoint_dir=ckpt)
    assert again.metrics["resumed_from"].endswith("checkpoint-36") and again.steps == 42
    assert [p["step"] for p in again.metrics["curve"]] == [0, 12, 24, 36, 42]


def test_train_reader_cli_gate_refuses_a_reader_that_does_not_beat_the_baseline(make_collection, home, tmp_path):
    import json as json_

    from ragtune.data.squad import save_squad
    from ragtune.models.registry import ModelRegistry

    examples = _one_question_per_paragraph(n_articles=4, per_article=6)
    save_squad(examples, tmp_path / "qa.json")
    make_collection("rd").close()
    # Two steps: the span head is still close to random, the sentence baseline reads better.
    out = json_.loads(run_cli("train", "reader", "-c", "rd", "--data", str(tmp_path / "qa.json"), "--max-steps", "2",
                              "--batch-size", "4", "--eval-fraction", "0.25", "--apply", "--json", home=home).stdout)
    gate = out["gate"]
    assert gate["baseline"] == "sentence-baseline" and gate["questions"] == 6
    assert gate["enable"] is False and out["applied"] is False
    assert gate["candidate_scores"]["F1"] <= gate["baseline_scores"]["F1"] or gate["p_value"] >= 0.05
    assert ModelRegistry(home, "reader", "rd").get(out["version"])["gate"]["enable"] is False
    shown = json_.loads(run_cli("collections", "show", "rd", home=home).stdout)
    assert shown["pipeline"]["reader"]["model"] is None  # not applied


def test_train_reader_cli_over_retrieved_chunks_adds_labelled_distractors(make_collection, home, tmp_path):
    """--retrieved K: each training question also over the chunks the collection's search returns for
    it; the reader's scope covers those chunks (here the indexed contexts, public)."""
    from ragtune.data.squad import save_squad
    from ragtune.ingest.datasets import index_contexts
    from ragtune.models.registry import ModelRegistry

    examples = _one_question_per_paragraph(n_articles=4, per_article=6)
    save_squad(examples, tmp_path / "qa.json")
    coll = make_collection("rr")
    index_contexts(coll, examples, "rr", home)
    coll.close()
    out = run_cli("train", "reader", "-c", "rr", "--data", str(tmp_path / "qa.json"), "--max-steps", "2",
                  "--batch-size", "4", "--eval-fraction", "0.25", "--retrieved", "3", "--public-data", home=home).stdout
    line = next(line for line in out.splitlines() if line.startswith("reader "))
    questions, over = (int(x) for x in re.search(r"(\d+) questions \(\+ (\d+) over retrieved chunks\)", line).groups())
    assert questions == 18 and questions <= over <= 3 * questions  # each question: its chunk(s) and distractors
    version = line.split()[1].rstrip(":")
    assert ModelRegistry(home, "reader", "rr").get(version)["scope"]


def test_synth_answers_with_the_local_teacher_keeps_only_verbatim_spans_and_resumes(make_collection, home,
                                                                                    local_generator, tmp_path):
    from ragtune.ingest.datasets import index_contexts
    from ragtune.data.squad import load_squad
    from ragtune.synth.answers import AnswerSynthConfig, synthesize_answers

    coll = make_collection("sa")
    index_contexts(coll, _squad_slice(), "sa", home)
    folder = tmp_path / "answers"
    config = AnswerSynthConfig(max_chunks=3, batch_size=3)
    report = synthesize_answers(coll, local_generator, folder, config)
    # The 135M model is a poor teacher (it paraphrases); what must hold is that nothing but
    # verbatim spans gets through and that every attempt is accounted for.
    assert report.chunks == 3 and report.kept + sum(report.dropped.values()) == 3
    examples = load_squad(folder / "squad.json")
    assert len(examples) == report.kept
    for ex in examples:
        assert ex.context[ex.answer_starts[0]:].lower().startswith(ex.answers[0].lower())
    again = synthesize_answers(coll, local_generator, folder, config)  # every chunk done: nothing re-generated
    assert again == report and len((folder / "triples.jsonl").read_text().splitlines()) == 3


def test_synth_answers_cli_with_an_endpoint_teacher(make_collection, home, chat_server):
    """The teacher behind an OpenAI-compatible endpoint (here a scripted stand-in for a large
    model, which cannot run on this machine): each kind of bad reply is dropped for its reason,
    the good ones become SQuAD answers at the right offsets."""
    import re

    from ragtune.ingest.datasets import index_contexts
    from ragtune.data.squad import load_squad

    replies = []

    def teacher(messages):
        assert "word for word" in messages[0]["content"] and len(messages) == 8  # instructions + 3 worked examples
        passage = messages[-1]["content"].split("Passage:\n", 1)[1]
        span = re.search(r"[A-Za-z]+ [A-Za-z]+ [A-Za-z]+", passage).group(0)
        kind = ["good", "not in passage", "no question", "too long"][len(replies) % 4]
        replies.append(kind)
        return {"good": f"Question: What does the passage say first?\nAnswer: {span.upper()}.",
                "not in passage": "Question: Who won?\nAnswer: a zebra named Quantum",
                "no question": f"Answer: {span}",
                "too long": "Question: Why?\nAnswer: " + " ".join(passage.split()[:20])}[kind]

    chat_server.responder = teacher
    coll = make_collection("sa")
    index_contexts(coll, _squad_slice(), "sa", home)
    coll.close()  # the CLI process opens it
    out = json.loads(run_cli("synth", "answers", "-c", "sa", "--max-chunks", "5", "--set", "generator.backend=openai",
                             "--set", f"generator.base_url={chat_server.url}", "--set", "generator.model=teacher",
                             "--json", home=home).stdout)
    assert replies == ["good", "not in passage", "no question", "too long", "good"]
    assert out["kept"] == 2 and out["dropped"] == {"answer not in passage": 1, "no question": 1, "answer too long": 1}
    examples = load_squad(out["squad"])
    assert len(examples) == 2
    for ex in examples:  # the passage's own casing, at its own offset
        assert ex.answers[0] == ex.context[ex.answer_starts[0]:ex.answer_starts[0] + len(ex.answers[0])]
        assert ex.answers[0] != ex.answers[0].upper()


def test_train_preferences_cli_saves_a_dpo_adapter_with_held_out_accuracy(make_collection, home, local_generator, tmp_path):
    # The whole command, to the registry entry: publishing once crashed after training finished
    # (the objective was passed twice to describe), so a DPO run's result was lost.
    examples = _squad_slice()
    rows = [{"prompt": ex.question, "context": [ex.context], "chosen": ex.answers[0],
             "rejected": examples[(n + 1) % len(examples)].answers[0], "created": n}
            for n, ex in enumerate(examples)]
    path = tmp_path / "preferences.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    make_collection("pref", [f"generator.model={local_generator.path}"]).close()
    meta = json.loads(run_cli("train", "preferences", "-c", "pref", "--data", str(path), "--name", "pref-dpo",
                              "--max-steps", "2", "--batch-size", "2", "--eval-fraction", "0.34", "--json",
                              home=home).stdout)
    assert meta["objective"] == "dpo" and meta["method"] == "lora" and meta["steps"] == 2
    assert meta["task"] == "preference tuning (dpo)" and meta["hyperparameters"]["sft_weight"] == 1.0  # RPO by default
    assert meta["before"]["pairs"] == meta["after"]["pairs"] == round(len(rows) * 0.34)
    assert 0.0 <= meta["after"]["accuracy"] <= 1.0 and meta["after"]["margin"] != meta["before"]["margin"]
    # Two steps at a quarter of LoRA's rate do not move held-out accuracy: the gate refuses, the
    # adapter stays on disk for inspection and is not served.
    assert meta["gate"]["promote"] is False and meta["gate"]["pairs"] == meta["after"]["pairs"]
    assert "margins" not in meta["after"]  # per-pair figures feed the gate, they do not bloat meta.json
    asked = run_cli("ask", "-c", "pref", "--adapter", "pref-dpo", "Who?", home=home, check=False)
    assert asked.returncode != 0 and "refused by its gate" in asked.stderr
    again = run_cli("train", "preferences", "-c", "pref", "--data", str(path), "--name", "pref-dpo", home=home,
                    check=False)
    assert again.returncode == 2 and "exists" in again.stderr
    negative = run_cli("train", "preferences", "-c", "pref", "--data", str(path), "--name", "pref-neg",
                       "--sft-weight", "-1", home=home, check=False)
    assert negative.returncode == 2 and "sft_weight must be" in negative.stderr


def test_dpo_that_wins_on_held_out_pairs_is_promoted_and_served(make_collection, home, local_generator, tmp_path):
    """A preference the base does not hold and DPO can learn: of two phrasings of the same length,
    the one the base finds less likely is chosen for every question. Held-out accuracy rises from
    below a half and the gate lets the adapter be served."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ragtune.train.preference import dpo_rows, preference_accuracy

    rows = [{"prompt": f"Where is rule {n} of the handbook?", "chosen": f"See section {n} of the handbook [1].",
             "rejected": f"See chapter {n} of the handbook [1].", "created": n} for n in range(24)]
    tokenizer = AutoTokenizer.from_pretrained(local_generator.path)
    base = AutoModelForCausalLM.from_pretrained(local_generator.path)
    if preference_accuracy(base, tokenizer, dpo_rows(rows), "cpu")["accuracy"] >= 0.5:
        rows = [dict(r, chosen=r["rejected"], rejected=r["chosen"]) for r in rows]
    path = tmp_path / "preferences.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    make_collection("pref-win", [f"generator.model={local_generator.path}"]).close()
    meta = json.loads(run_cli("train", "preferences", "-c", "pref-win", "--data", str(path), "--name", "pref-win",
                              "--epochs", "2", "--batch-size", "4", "--learning-rate", "1e-3", "--beta", "0.5",
                              "--eval-fraction", "0.34", "--json", home=home, timeout=900).stdout)
    gate = meta["gate"]
    assert gate["pairs"] == 8 and gate["accuracy_before"] < 0.5 < gate["accuracy_after"], gate
    assert gate["promote"] is True and gate["p_value"] < 0.05
    from ragtune.models.adapters import AdapterRegistry

    assert AdapterRegistry(home).resolve("pref-win").is_dir()  # a name the gate let through resolves

    # Re-asked on the newest pairs (those the gate held out), scoring gives the gate's own figures;
    # on pairs of rules never seen in training, the learned phrasing still wins.
    held = path.with_name("held.jsonl")
    held.write_text("\n".join(json.dumps(r) for r in rows[-8:]))
    again = json.loads(run_cli("eval", "preferences", "-c", "pref-win", "--data", str(held), "--adapter", "pref-win",
                               "--json", home=home).stdout)
    assert again["accuracy_before"] == gate["accuracy_before"] and again["accuracy_after"] == gate["accuracy_after"]
    flip = rows[0]["chosen"].startswith("See chapter")
    fresh = [{"prompt": f"Where is rule {n} of the handbook?", "chosen": f"See section {n} of the handbook [1].",
              "rejected": f"See chapter {n} of the handbook [1]."} for n in range(40, 52)]
    fresh = [dict(r, chosen=r["rejected"], rejected=r["chosen"]) if flip else r for r in fresh]
    held.write_text("\n".join(json.dumps(r) for r in fresh))
    new = json.loads(run_cli("eval", "preferences", "--base", str(local_generator.path), "--data", str(held),
                             "--adapter", "pref-win", "--json", home=home).stdout)
    assert new["pairs"] == 12 and new["accuracy_after"] > new["accuracy_before"], new
    nobase = run_cli("eval", "preferences", "--data", str(held), "--adapter", "pref-win", home=home, check=False)
    assert nobase.returncode == 2 and "--base MODEL or --collection" in nobase.stderr


def test_fit_prompt_keeps_the_answers_inside_max_length(local_generator):
    """Served prompts carry every retrieved passage; trl cuts a too-long pair from the end, which
    drops the answers the loss compares. Fitted, every pair's answers survive: the passage they
    quote is kept, others only as room allows, under their served numbers."""
    from transformers import AutoTokenizer

    from ragtune.train.preference import dpo_rows, fit_prompt

    tokenizer = AutoTokenizer.from_pretrained(local_generator.path)

    def count(messages):
        return len(tokenizer(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True),
                             add_special_tokens=False)["input_ids"])

    filler = [f"Paragraph {i} about unrelated policies. " * 30 for i in range(6)]
    row = {"prompt": "When are salaries paid?",
           "context": filler[:4] + ["Salaries are paid on the last working day."] + filler[4:],
           "chosen": "on the last working day", "rejected": "Paragraph 2 about unrelated policies."}
    [pair] = dpo_rows([row], fit=lambda r, answers: fit_prompt(r, answers, count, 400))
    user = pair["prompt"][-1]["content"]
    assert "[5] Salaries are paid on the last working day." in user  # the quoted passages, numbered as served
    assert "[3] Paragraph 2" in user and "[1] Paragraph 0" not in user
    assert count(pair["prompt"] + pair["chosen"]) <= 400 and count(pair["prompt"] + pair["rejected"]) <= 400
    assert dpo_rows([row], fit=lambda r, answers: fit_prompt(r, answers, count, 60)) == []  # no room even for one
