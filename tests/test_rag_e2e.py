"""End-to-end RAG training on the real MiniLM query encoder, the real SmolLM2 generator (LoRA)
and a real on-disk index: the loss is the true marginal, gradients reach both models, training
lowers it, and re-indexing rewrites the stored vectors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from ragtune.ingest.datasets import index_contexts
from ragtune.data.squad import QAExample
from ragtune.train.rag import RagTrainConfig, rag_examples, step_loss, train_rag
from ragtune.train.rag.index import TrainingIndex
from ragtune.train.rag.trainer import load_rag_model
from tests.conftest import run_cli

# Real models, real servers, subprocesses or training: `make test` runs them, `make test-fast` does not.
pytestmark = pytest.mark.slow

# Facts the project wrote for this test: each context answers one question.
FACTS = [
    ("orbit", "The Kestrel satellite circles the planet every 94 minutes at an altitude of 540 km.",
     "How often does the Kestrel satellite circle the planet?", "every 94 minutes"),
    ("bakery", "The Linden Street bakery opens at 6 am and sells rye bread baked in a stone oven.",
     "When does the Linden Street bakery open?", "6 am"),
    ("bridge", "The Varna footbridge is made of weathering steel and spans 120 metres over the river.",
     "How long is the Varna footbridge?", "120 metres"),
    ("library", "The Osk library lends telescopes to members for two weeks at a time.",
     "What does the Osk library lend to members?", "telescopes"),
    ("choir", "The harbour choir rehearses on Thursday evenings in the old customs house.",
     "Where does the harbour choir rehearse?", "the old customs house"),
    ("garden", "The rooftop garden grows saffron crocuses that are harvested every October.",
     "When are the rooftop garden's crocuses harvested?", "every October"),
]


def _examples() -> list[QAExample]:
    return [QAExample(id=f"q-{art}", question=q, context=ctx, answers=[a], answer_starts=[ctx.index(a)],
                      title=art, article_id=art) for art, ctx, q, a in FACTS]


@pytest.fixture
def rag_collection(make_collection, home, local_generator):
    coll = make_collection("facts", ["answer.max_new_tokens=16", "answer.use_parents=false"])
    coll.pipeline.generator.model = local_generator.path  # the converted SmolLM2 of this test session
    examples = _examples()
    index_contexts(coll, examples, "facts", home)
    triples, skipped = rag_examples(coll, examples)
    assert skipped == 0 and len(triples) == len(FACTS)
    return coll, triples


def _brute_force(model, index, rows, config) -> float:
    """-mean_b log Σ_k softmax(s_b/τ)_k p(y_b|q_b,z_k), each pair scored alone in float64."""
    total = 0.0
    for r in rows:
        q = model.encoder.encode([r["question"]], normalize_embeddings=True, convert_to_numpy=True)[0].astype(np.float64)
        ids = index.search(q.astype(np.float32), config.k)
        s = index.vectors(ids).astype(np.float64) @ q / config.temperature
        prior = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
        terms = []
        for pid in ids:
            prompt, completion = model.pair_ids(r["question"], index.text(pid), r["answer"])
            with torch.no_grad():
                logits = model.generator(input_ids=torch.tensor([prompt + completion])).logits[0].double()
            logp = torch.log_softmax(logits, -1)
            terms.append(sum(float(logp[len(prompt) + i - 1, t]) for i, t in enumerate(completion)))
        total += -math.log(sum(p * math.exp(t) for p, t in zip(prior, terms)))
    return total / len(rows)


def test_marginal_loss_equals_brute_force_and_gradients_reach_both(rag_collection, home):
    coll, triples = rag_collection
    config = RagTrainConfig(variant="e2e", k=3, contrastive_weight=0.0, temperature=0.1)
    model = load_rag_model(coll, config, home)
    model.eval()  # no dropout: the two computations must see the same function
    index = TrainingIndex.live(coll)
    rows = [t.to_dict() for t in triples[:3]]
    loss, parts = step_loss(model, rows, index, config)
    assert float(loss) == pytest.approx(_brute_force(model, index, rows, config), rel=1e-4, abs=1e-4)
    assert parts["marginal_nll"] == pytest.approx(float(loss))

    loss.backward()
    encoder_grads = [p.grad for p in model.encoder.parameters() if p.grad is not None]
    lora_grads = [p.grad for n, p in model.generator.named_parameters() if "lora_" in n and p.grad is not None]
    assert encoder_grads and any(float(g.abs().sum()) > 0 for g in encoder_grads)  # through p(z|q)
    assert lora_grads and any(float(g.abs().sum()) > 0 for g in lora_grads)  # through p(y|q,z)
    frozen = [p for n, p in model.generator.named_parameters() if "lora_" not in n]
    assert all(p.grad is None for p in frozen)  # the base LLM stays as it is


def test_contrastive_term_and_baselines(rag_collection, home):
    coll, triples = rag_collection
    rows = [t.to_dict() for t in triples[:2]]
    index = TrainingIndex.live(coll)

    config = RagTrainConfig(variant="retriever", k=2, temperature=0.1)
    model = load_rag_model(coll, config, home)
    assert model.generator is None  # retriever-only never loads the LLM
    model.eval()
    loss, parts = step_loss(model, rows, index, config)
    expected = 0.0
    for r in rows:  # cross-entropy of the gold chunk among the top 2 (+ gold when missed)
        q = model.encoder.encode([r["question"]], normalize_embeddings=True)
        ids = index.search(q[0], 2)
        ids += [r["gold"]] if r["gold"] not in ids else []
        s = index.vectors(ids) @ q[0] / 0.1
        expected += -(s[ids.index(r["gold"])] - np.log(np.exp(s).sum()))
    assert float(loss) == pytest.approx(expected / len(rows), rel=1e-4)

    config = RagTrainConfig(variant="generator", k=2)
    model = load_rag_model(coll, config, home)
    loss, _ = step_loss(model, rows, index, config)
    loss.backward()
    assert all(p.grad is None for p in model.encoder.parameters())  # the retriever is frozen
    assert any(p.grad is not None for n, p in model.generator.named_parameters() if "lora_" in n)

    config = RagTrainConfig(variant="dalm", batch_size=2)
    model = load_rag_model(coll, config, home)
    model.eval()
    loss, parts = step_loss(model, rows, index, config)
    golds = [r["gold"] for r in rows]
    q = model.encoder.encode([r["question"] for r in rows], normalize_embeddings=True)
    s = q @ index.vectors(golds).T / config.temperature
    contrastive = float(np.mean([-(s[i, i] - np.log(np.exp(s[i]).sum())) for i in range(len(rows))]))
    assert float(loss) == pytest.approx(contrastive + parts["gold_nll"], rel=1e-4)


def test_training_lowers_the_loss_reindexes_and_saves(rag_collection, home):
    coll, triples = rag_collection
    config = RagTrainConfig(variant="e2e", k=2, max_steps=6, batch_size=3, refresh_every=3, retriever_lr=2e-4,
                            generator_lr=2e-3, temperature=0.1)
    before_model = load_rag_model(coll, config, home)
    before_model.eval()
    live = TrainingIndex.live(coll)
    rows = [t.to_dict() for t in triples]
    with torch.no_grad():
        before = float(step_loss(before_model, rows, live, config)[0])
    live_vectors = live.vectors([p["point_id"] for p in live.points])

    result = train_rag(coll, triples, config, home)
    assert result.steps == 6 and result.index.refreshes == 2  # after step 3 and at the end
    model = result.model
    model.eval()
    with torch.no_grad():
        after = float(step_loss(model, rows, result.index, config)[0])
    assert after < before

    # The training version's stored vectors are the trained encoder's, no longer the live ones.
    ids = [p["point_id"] for p in live.points]
    stored = result.index.vectors(ids)
    assert not np.allclose(stored, live_vectors, atol=1e-4)
    fresh = model.encoder.encode_document([p["search_text"] for p in live.points], normalize_embeddings=True)
    assert np.allclose(stored, fresh, atol=1e-4)

    saved = result.save(coll, "facts-rag", home)
    version = saved["index_version"]
    assert coll.versions()[version]["state"] == "ready"
    # Usable by ask: the new index version with the trained query encoder + the adapter.
    from ragtune.answer import Answerer
    from ragtune.types import ServicePrincipal

    with coll.at_version(version) as view:
        view.pipeline.generator.adapter = "facts-rag"
        answer = Answerer.from_pipeline(view, home).ask(FACTS[1][2], ServicePrincipal(acl=tuple(view.acl_tokens())))
        assert answer.hits and answer.hits[0].doc_id.startswith("bakery")
        assert np.allclose(view.embedder.embed_query("x"), model.encoder.encode_query(["x"], normalize_embeddings=True)[0],
                           atol=1e-5)


def test_cli_trains_retriever_only_and_reports(tmp_path, home, rag_collection):
    coll, _ = rag_collection
    coll.close()
    data = tmp_path / "facts.json"
    data.write_text(json.dumps({"data": [{"title": ex.article_id, "paragraphs": [{"context": ex.context, "qas": [
        {"id": ex.id, "question": ex.question, "answers": [{"text": ex.answers[0], "answer_start": ex.answer_starts[0]}]}]}]}
        for ex in _examples()]}))
    out = run_cli("train", "rag", "-c", "facts", "--data", str(data), "--variant", "retriever", "--max-steps", "2",
                  "--batch-size", "3", "--json", home=home)
    report = json.loads(out.stdout)
    assert report["steps"] == 2 and report["adapter"] is None and report["index_version"]
    bad = run_cli("train", "rag", "-c", "facts", "--data", str(data), "--variant", "nope", home=home, check=False)
    assert bad.returncode != 0 and "variant 'nope'" in bad.stderr + bad.stdout


def test_frozen_retriever_reads_the_live_index_and_never_reindexes(rag_collection, home):
    coll, triples = rag_collection
    versions_before = coll.versions()
    config = RagTrainConfig(variant="generator", k=2, max_steps=2, batch_size=2, refresh_every=1)
    result = train_rag(coll, triples[:4], config, home)
    assert result.index.version is None and result.index.refreshes == 0
    assert coll.versions() == versions_before  # no training copy of the index was made
    saved = result.save(coll, "facts-gen", home)
    assert saved["adapter"] == "facts-gen" and saved["index_version"] is None
