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
from dataclasses import asdict, dataclass
from pathlib import Path

from ragtune.errors import InputError
from ragtune.train import run_trainer
from ragtune.train.embedder import TrainResult


@dataclass
class RerankerTrainConfig:
    epochs: float = 1.0
    max_steps: int = -1
    batch_size: int = 16
    learning_rate: float = 2e-5
    warmup_ratio: float = 0.1
    max_length: int = 320  # question + a 200-token chunk with its title prefix
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


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
        args = CrossEncoderTrainingArguments(
            output_dir=scratch, num_train_epochs=config.epochs, max_steps=config.max_steps,
            per_device_train_batch_size=config.batch_size, learning_rate=config.learning_rate,
            warmup_steps=config.warmup_ratio, seed=config.seed, data_seed=config.seed, save_strategy="no",
            report_to=[], logging_steps=10, use_cpu=best_device(device) == "cpu",
        )
        trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=Dataset.from_list(pairs), loss=loss)
        output, seconds = run_trainer(trainer)
    model.save_pretrained(str(out_dir))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return TrainResult(Path(out_dir), output.global_step, float(output.training_loss), seconds, trainable, trainable)
