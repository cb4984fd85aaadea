"""Fine-tune a sentence-transformers embedder on (question, chunk[, hard negatives]) rows.

Built on ``SentenceTransformerTrainer`` with ``MultipleNegativesRankingLoss``: every other
chunk in the batch is a negative, plus the mined hard negatives. The ``NO_DUPLICATES`` batch
sampler keeps two questions of one chunk (the same positive text) out of one batch, where they
would be each other's false negatives.

Methods:

- ``full``: every weight trains (22M for MiniLM; minutes on a CPU for a few thousand pairs);
- ``lora``: low-rank adapters on the attention projections, merged into the weights after
  training, so the saved model loads like any other and costs nothing extra at query time;
- ``query-adapter``: the encoder is frozen and only a linear map on the *query* embedding
  (identity at start) trains, through a sentence-transformers ``Router`` whose document route
  is the untouched base model: the collection's stored vectors stay valid, so adopting it
  needs no re-embedding (the new index version shares the live one's vectors).

Example:
    >>> from ragtune.train.embedder import EmbedderTrainConfig, train_embedder
    >>> rows = [{"anchor": "what limits tumour growth?", "positive": "Hypoxia limits tumour growth ..."}]
    >>> train_embedder("all-MiniLM-L6-v2", rows, "out/model", EmbedderTrainConfig(epochs=1))  # doctest: +SKIP
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ragtune.errors import InputError
from ragtune.train.args import TrainingArgs


@dataclass
class EmbedderTrainConfig(TrainingArgs):
    method: Literal["full", "lora", "query-adapter"] = "full"
    batch_size: int = 32  # learning_rate None: 2e-5 full, 2e-4 lora, 1e-3 query adapter
    weight_decay: float = 0.01
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    scale: float = 20.0  # MNRL temperature⁻¹ (cosine × scale)
    # mnrl: contrastive on (question, chunk) with in-batch + mined negatives; margin-mse / kl:
    # distil a teacher's scores over the mined candidates (rows carry a "label" list: positive first).
    loss: Literal["mnrl", "margin-mse", "kl"] = "mnrl"
    kl_teacher_temperature: float = 1.0  # teacher logits ÷ this before the softmax (kl only)
    max_seq_length: int | None = None

    def default_learning_rate(self) -> float:
        return {"full": 2e-5, "lora": 2e-4, "query-adapter": 1e-3}[self.method]


@dataclass
class TrainResult:
    path: Path
    steps: int
    train_loss: float
    seconds: float
    trainable_parameters: int
    total_parameters: int
    metrics: dict[str, float] = field(default_factory=dict)  # e.g. held-out loss before / after
    model: Any = field(default=None, repr=False, compare=False)  # the trained model, still in memory


def train_embedder(base_model: str, rows: list[dict[str, str]], out_dir: str | Path,
                   config: EmbedderTrainConfig | None = None, device: str | None = None) -> TrainResult:
    """Train on ``rows`` (columns anchor, positive, optional negative_1..n) and save to ``out_dir``."""
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.base.sampler import BatchSamplers

    from ragtune.models.loading import best_device, sentence_transformer
    from ragtune.train import run_trainer

    config = config or EmbedderTrainConfig()
    if not rows:
        raise InputError("no training rows: generate and filter synthetic queries first")
    import copy

    # A private copy: the loader's cached model is shared by every search in this process.
    model = copy.deepcopy(sentence_transformer(base_model, device))
    if config.max_seq_length:
        model.max_seq_length = config.max_seq_length
    if config.method == "lora":
        _add_lora(model, config)
    router_mapping = {}
    if config.method == "query-adapter":
        model = _query_adapter_model(model)
        router_mapping = {col: ("query" if col == "anchor" else "document") for col in rows[0] if col != "label"}
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    dataset = Dataset.from_list(rows)
    distil = config.loss != "mnrl"
    if distil and "label" not in rows[0]:
        raise InputError(f"loss {config.loss!r} distils teacher scores: rows need a 'label' (run the teacher step)")
    loss = _loss(model, config)
    with tempfile.TemporaryDirectory(prefix="ragtune-train-") as scratch:
        args = SentenceTransformerTrainingArguments(**config.hf_arguments(
            scratch, best_device(device), weight_decay=config.weight_decay,
            # In-batch negatives must not be duplicates of a positive; distillation has no in-batch term.
            batch_sampler=BatchSamplers.BATCH_SAMPLER if distil else BatchSamplers.NO_DUPLICATES,
            logging_steps=10, disable_tqdm=False, dataloader_drop_last=len(rows) > config.batch_size,
            router_mapping=router_mapping),
        )
        trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=loss)
        output, seconds = run_trainer(trainer)
    if config.method == "lora":
        _merge_lora(model)
    out = Path(out_dir)
    model.save_pretrained(str(out))
    return TrainResult(out, output.global_step, float(output.training_loss), seconds, trainable, total)


def _loss(model, config: EmbedderTrainConfig):
    """The training loss, one of sentence-transformers' own (GPL uses MarginMSE on dot scores)."""
    from sentence_transformers.sentence_transformer import losses

    if config.loss == "margin-mse":
        return losses.MarginMSELoss(model)
    if config.loss == "kl":
        return losses.DistillKLDivLoss(model, teacher_temperature=config.kl_teacher_temperature)
    return losses.MultipleNegativesRankingLoss(model, scale=config.scale)


def _add_lora(model, config: EmbedderTrainConfig) -> None:
    from peft import LoraConfig, TaskType, get_peft_model

    transformer = model[0]
    lora = LoraConfig(task_type=TaskType.FEATURE_EXTRACTION, r=config.lora_r, lora_alpha=config.lora_alpha,
                      lora_dropout=config.lora_dropout, target_modules=["query", "key", "value", "dense"])
    transformer.model = get_peft_model(transformer.model, lora)


def _merge_lora(model) -> None:
    transformer = model[0]
    transformer.model = transformer.model.merge_and_unload()


def _query_adapter_model(base):
    """[Router] with query route = base encoder → Dense (identity init) → Normalize and document
    route = the base modules unchanged; only the Dense layer trains."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules.dense import Dense
    from sentence_transformers.base.modules.normalize import Normalize
    from sentence_transformers.base.modules.router import Router

    modules = list(base)
    for p in base.parameters():
        p.requires_grad = False
    dim = base.get_embedding_dimension()
    dense = Dense(dim, dim, bias=True, activation_function=None, init_weight=torch.eye(dim), init_bias=torch.zeros(dim))
    encoder = modules[:-1] if isinstance(modules[-1], Normalize) else modules
    router = Router.for_query_document(query_modules=[*encoder, dense, Normalize()], document_modules=modules)
    return SentenceTransformer(modules=[router], device=str(base.device))
