"""Train a cross-encoder reranker from a plain encoder (no pretrained reranker exists offline).

The model starts from MiniLM's encoder with a fresh one-logit head
(``CrossEncoder(..., num_labels=1)``) and learns from (question, chunk) pairs labelled 1 for
the chunk the question was written from and 0 for its mined hard negatives, with
``BinaryCrossEntropyLoss`` on the ``CrossEncoderTrainer``. The result plugs into the rerank
stage: ``--set reranker.model=<path>``.

Example:
    >>> from ragtune.train.reranker import RerankerTrainConfig, labelled_pairs, train_reranker
    >>> rows = [{"anchor": "q?", "positive": "p", "negative_1": "n"}]
    >>> labelled_pairs(rows)
    [{'query': 'q?', 'passage': 'p', 'label': 1.0}, {'query': 'q?', 'passage': 'n', 'label': 0.0}]
    >>> train_reranker("all-MiniLM-L6-v2", rows, "out/reranker", RerankerTrainConfig())  # doctest: +SKIP
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from ragtune.errors import InputError
from ragtune.train import run_trainer
from ragtune.train.args import TrainingArgs
from ragtune.train.embedder import TrainResult


@dataclass
class RerankerTrainConfig(TrainingArgs):
    max_length: int = 320  # question + a 200-token chunk with its title prefix


def labelled_pairs(rows: list[dict[str, str]]) -> list[dict]:
    out = []
    for row in rows:
        out.append({"query": row["anchor"], "passage": row["positive"], "label": 1.0})
        out += [{"query": row["anchor"], "passage": v, "label": 0.0} for k, v in row.items() if k.startswith("negative")]
    return out


def train_reranker(base_model: str, rows: list[dict[str, str]], out_dir: str | Path,
                   config: RerankerTrainConfig | None = None, device: str | None = None) -> TrainResult:
    """Train on (anchor, positive, negative_1..n) rows; rows need at least one negative each."""
    from datasets import Dataset
    from sentence_transformers.cross_encoder import (
        CrossEncoder,
        CrossEncoderTrainer,
        CrossEncoderTrainingArguments,
    )
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

    from ragtune.models.loading import best_device, resolve_model

    config = config or RerankerTrainConfig()
    pairs = labelled_pairs(rows)
    if not any(p["label"] == 0.0 for p in pairs):
        raise InputError("reranker training needs hard negatives: run `ragtune synth negatives` first")
    model = CrossEncoder(resolve_model(base_model), num_labels=1, max_length=config.max_length,
                         device=best_device(device))
    n_pos = sum(p["label"] == 1.0 for p in pairs)
    import torch

    # Balance the classes: each question has one positive and several negatives.
    loss = BinaryCrossEntropyLoss(model, pos_weight=torch.tensor((len(pairs) - n_pos) / max(1, n_pos)))
    with tempfile.TemporaryDirectory(prefix="ragtune-train-") as scratch:
        args = CrossEncoderTrainingArguments(**config.hf_arguments(scratch, best_device(device), logging_steps=10))
        trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=Dataset.from_list(pairs), loss=loss)
        output, seconds = run_trainer(trainer)
    model.save_pretrained(str(out_dir))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return TrainResult(Path(out_dir), output.global_step, float(output.training_loss), seconds, trainable, trainable)
