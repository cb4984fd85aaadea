"""Teacher → embedder distillation: the losses against a hand computation, teacher scores from
the hybrid fusion, and a distilled training run through the real trainer."""

from __future__ import annotations

import json

import pytest
import torch

from ragtune.train.embedder import EmbedderTrainConfig, _loss


def _tiny_batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    q, p, n1, n2 = (torch.nn.functional.normalize(torch.randn(3, 8, generator=g), dim=1) for _ in range(4))
    teacher = torch.tensor([[4.0, 1.0, -2.0], [0.5, 2.5, 0.0], [3.0, 3.0, 1.0]])
    return [q, p, n1, n2], teacher


def test_margin_mse_equals_a_hand_computation(tiny_embedder):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(tiny_embedder, device="cpu")
    (q, p, n1, n2), teacher = _tiny_batch()
    loss = _loss(model, EmbedderTrainConfig(loss="margin-mse")).compute_loss_from_embeddings([q, p, n1, n2], teacher)
    dot = lambda a, b: (a * b).sum(dim=1)  # noqa: E731
    student = torch.stack([dot(q, p) - dot(q, n1), dot(q, p) - dot(q, n2)], dim=1)
    target = torch.stack([teacher[:, 0] - teacher[:, 1], teacher[:, 0] - teacher[:, 2]], dim=1)
    assert torch.allclose(loss, ((student - target) ** 2).mean(), atol=1e-6)


def test_listwise_kl_equals_a_hand_computation(tiny_embedder):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(tiny_embedder, device="cpu")
    (q, p, n1, n2), teacher = _tiny_batch(1)
    config = EmbedderTrainConfig(loss="kl", kl_teacher_temperature=2.0)
    loss = _loss(model, config).compute_loss_from_embeddings([q, p, n1, n2], teacher)
    student = torch.stack([(q * d).sum(dim=1) for d in (p, n1, n2)], dim=1)
    t = torch.softmax(teacher / 2.0, dim=1)
    by_hand = (t * (t.log() - torch.log_softmax(student, dim=1))).sum(dim=1).mean()  # KL(teacher ‖ student), batch mean
    assert torch.allclose(loss, by_hand, atol=1e-6)


@pytest.mark.slow  # trains
def test_hybrid_teacher_scores_feed_a_distilled_embedder(tmp_path, make_tiny_collection, tiny_embedder):
    from ragtune.data.beir import corpus_record, query_record, write_corpus, write_qrels, write_queries
    from ragtune.ingest.sync import ingest
    from ragtune.synth.negatives import MiningConfig, mine_negatives
    from ragtune.synth.teacher import distillation_rows, score_with_teacher, teacher_path
    from ragtune.train.embedder import train_embedder
    from ragtune.types import Acl

    things = "anvil brick crate drum engine fridge globe harp iron jug kettle lamp".split()
    src = tmp_path / "facts.jsonl"
    src.write_text("\n".join(json.dumps({"id": f"f{i}", "text": f"The {w} in room {i} weighs {i * 3} kilograms."})
                             for i, w in enumerate(things)))
    coll = make_tiny_collection("facts")
    ingest(coll, src, Acl(public=True))
    chunks = {c["doc_id"]: c for c in coll.chunks()}
    folder = tmp_path / "synth"
    write_corpus(folder, [corpus_record(c["chunk_id"], c["search_text"], metadata={"doc_id": d, "point_id": c["point_id"]})
                          for d, c in chunks.items()])
    write_queries(folder, [query_record(f"q{i}", f"how heavy is the {w}") for i, w in enumerate(things)])
    write_qrels(folder, "train", [(f"q{i}", chunks[f"f{i}"]["chunk_id"], 1) for i in range(len(things))])
    mine_negatives(coll, folder, "train", MiningConfig(num_negatives=2, relative_margin=-10.0, skip_same_document=True))

    assert score_with_teacher(coll, folder, "hybrid") == len(things)
    scored = [json.loads(line) for line in teacher_path(folder, "hybrid", "train").read_text().splitlines()]
    for r in scored:
        assert len(r["scores"]) == len(r["negatives"]) + 1 and all(0 < s <= 2 for s in r["scores"])
    # The question's own chunk holds its rare word ("anvil"): BM25 ranks it first, so the fusion
    # teacher scores the positive above every mined negative.
    assert all(r["scores"][0] > max(r["scores"][1:]) for r in scored)
    assert score_with_teacher(coll, folder, "hybrid") == len(things)  # resumed: nothing rescored
    assert len(teacher_path(folder, "hybrid", "train").read_text().splitlines()) == len(things)

    rows = distillation_rows(folder, "hybrid", num_negatives=2)
    assert len(rows) == len(things) and len(rows[0]["label"]) == 3
    for loss in ("margin-mse", "kl"):
        result = train_embedder(tiny_embedder, rows, tmp_path / loss, EmbedderTrainConfig(loss=loss, max_steps=3, batch_size=4))
        assert result.steps == 3 and result.train_loss == result.train_loss  # ran, finite
    with pytest.raises(ValueError, match="rows need a 'label'"):
        train_embedder(tiny_embedder, [{k: v for k, v in r.items() if k != "label"} for r in rows], tmp_path / "x",
                       EmbedderTrainConfig(loss="kl", max_steps=1))
