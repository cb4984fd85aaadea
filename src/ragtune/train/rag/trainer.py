"""``train_rag``: retriever and generator trained as one system on (question, answer) pairs,
on the Hugging Face ``Trainer`` (a custom ``compute_loss``; the loop, schedule, clipping and
logging are the Trainer's).

Each step, for every question of the batch:

1. embed it with the *current* query encoder (with gradient) and retrieve the top-K chunks
   from the training index (:mod:`ragtune.train.rag.index`), whose passage vectors are fixed
   within a refresh period;
2. scores ``s_k = q · d_k`` against those fixed vectors, ``p(z|q) = softmax(s / τ)``;
3. the generator's ``log p(y | q, z_k)`` for each passage, answer tokens only;
4. the loss of the variant:

   - ``e2e``: RAG-Sequence ``-log Σ_k p(z_k|q) p(y|q,z_k)`` + ``contrastive_weight`` × the
     gold chunk's cross-entropy among the K retrieved (+ gold). Both models train.
   - ``retriever``: the contrastive term alone; the generator is not loaded.
   - ``generator``: RAG-Sequence with the retriever frozen (the live index, no copy).
   - ``dalm``: the DALM-style baseline: the generator sees only the gold passage, the retriever
     an in-batch contrastive loss (:func:`ragtune.train.rag.losses.gold_passage_loss`).

The passage vectors are re-encoded every ``refresh_every`` steps and once more at the end, so
the version handed over is indexed by the encoder that was trained.

Example:
    >>> from ragtune.train.rag import RagTrainConfig, train_rag
    >>> result = train_rag(collection, examples, RagTrainConfig(variant="e2e", max_steps=50))  # doctest: +SKIP
    >>> result.save(collection, adapter_name="rag-e2e")  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import os
import statistics
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch

from ragtune.collection import Collection
from ragtune.errors import InputError
from ragtune.train.args import TrainingArgs
from ragtune.train.rag.data import RagExample
from ragtune.train.rag.index import TrainingIndex
from ragtune.train.rag.losses import (
    contrastive_loss,
    gold_passage_loss,
    rag_sequence_loss,
)
from ragtune.train.rag.model import RagModel

Variant = Literal["e2e", "retriever", "generator", "dalm"]
VARIANTS = ("e2e", "retriever", "generator", "dalm")


@dataclass
class RagTrainConfig(TrainingArgs):
    """Two parameter groups, two learning rates (``retriever_lr``, ``generator_lr``): the shared
    ``learning_rate`` is not used."""

    variant: Variant = "e2e"
    k: int = 4  # passages marginalised over per question
    temperature: float = 0.05  # τ of p(z|q) = softmax(cosine / τ); 0.05 = MNRL's scale 20
    contrastive_weight: float = 1.0  # e2e: weight of the gold-chunk cross-entropy next to the marginal loss
    retriever_method: Literal["full", "lora"] = "full"
    retriever_lr: float = 2e-5
    generator_lr: float = 2e-4
    generator_options: dict[str, Any] = field(default_factory=dict)  # LoRA options, e.g. {"r": 8}
    refresh_every: int = 0  # steps between re-indexing the passages (0: only at the end)
    batch_size: int = 4
    warmup_ratio: float = 0.05
    max_passage_tokens: int = 256  # passage tokens the generator reads per pair

    def default_learning_rate(self) -> float:
        return self.generator_lr  # what the Trainer's own optimiser setting holds; the groups set their own

    def __post_init__(self) -> None:
        if self.learning_rate is not None:
            raise InputError("train rag has two learning rates: set retriever_lr and generator_lr")
        if self.variant not in VARIANTS:
            raise InputError(f"variant {self.variant!r}: use one of {', '.join(VARIANTS)}")
        if self.k < 1:
            raise InputError("k must be at least 1")
        if self.variant == "dalm" and self.batch_size < 2:
            raise InputError("the dalm variant's contrastive loss uses in-batch negatives: batch_size must be ≥ 2")

    @property
    def trains_retriever(self) -> bool:
        return self.variant in ("e2e", "retriever", "dalm")

    @property
    def trains_generator(self) -> bool:
        return self.variant in ("e2e", "generator", "dalm")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RagTrainResult:
    config: RagTrainConfig
    model: RagModel
    index: TrainingIndex
    steps: int
    train_loss: float
    seconds: float
    parts: dict[str, float]  # mean of each loss term over the first and the last quarter of steps
    base_embedder: str
    base_generator: str

    def save(self, collection: Collection, adapter_name: str | None = None, home: str | Path | None = None,
             overwrite: bool = False, info: dict | None = None) -> dict[str, Any]:
        """Retriever → a new embedder version + the re-indexed shadow index version; generator
        → a named adapter. Returns what was written (``embedder_version``, ``index_version``,
        ``adapter``)."""
        from ragtune.models.adapters import AdapterRegistry
        from ragtune.models.registry import ModelRegistry

        meta = {"variant": self.config.variant, "hyperparameters": self.config.to_dict(), "steps": self.steps,
                "train_loss": self.train_loss, "train_seconds": round(self.seconds, 1), "loss_parts": self.parts,
                **(info or {})}
        out: dict[str, Any] = {"embedder_version": None, "index_version": None, "adapter": None}
        if self.config.trains_generator:
            if adapter_name is None:
                raise InputError("the generator was trained: name its adapter (adapter_name)")
            registry = AdapterRegistry(home)
            with registry.create(adapter_name, overwrite=overwrite) as folder:
                self.model.generator.save_pretrained(str(folder))
                registry.describe(folder, base=self.base_generator, method="lora", task=f"rag {self.config.variant}",
                                  collection=collection.name, **meta)
            out["adapter"] = adapter_name
        if self.config.trains_retriever:
            embedders = ModelRegistry(home, "embedder", collection.name)
            encoder = self.model.encoder
            with embedders.new_version() as (version, folder):
                if self.config.retriever_method == "lora":
                    encoder[0].model = encoder[0].model.merge_and_unload()
                encoder.save_pretrained(str(folder))
                embedders.describe(folder, base=self.base_embedder, method=f"rag {self.config.variant}", **meta)
            out["embedder_version"] = version
            out["index_version"] = self.index.finish(str(embedders.path(version)), {"model_version": version})
        return out


class RagTrainer:
    """Builds the Trainer subclass lazily (transformers is imported only when training)."""

    @staticmethod
    def make(**kwargs):
        from transformers import Trainer

        class _RagTrainer(Trainer):
            def __init__(self, *args, rag_config: RagTrainConfig, index: TrainingIndex, **kw):
                super().__init__(*args, **kw)
                self.rag_config = rag_config
                self.index = index
                self.parts: list[dict[str, float]] = []

            def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
                loss, parts = step_loss(model, inputs["rows"], self.index, self.rag_config)
                self.parts.append(parts)
                return (loss, None) if return_outputs else loss

            def create_optimizer(self, model=None):
                if self.optimizer is None:
                    model = model or self.model
                    groups = [{"params": [p for p in m.parameters() if p.requires_grad], "lr": lr}
                              for m, lr in ((model.encoder, self.rag_config.retriever_lr),
                                            (model.generator, self.rag_config.generator_lr)) if m is not None]
                    groups = [g for g in groups if g["params"]]
                    self.optimizer = torch.optim.AdamW(groups, weight_decay=self.args.weight_decay)
                return self.optimizer

        return _RagTrainer(**kwargs)


def step_loss(model: RagModel, rows: list[dict], index: TrainingIndex, config: RagTrainConfig
              ) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss of one batch of {question, answer, gold} rows under ``config.variant``."""
    questions = [r["question"] for r in rows]
    answers = [r["answer"] for r in rows]
    if config.trains_retriever:
        queries = model.encode_queries(questions)
    else:  # a frozen retriever retrieves as it will at query time: no dropout
        model.encoder.eval()
        with torch.no_grad():
            queries = model.encode_queries(questions)
    if config.variant == "dalm":
        golds = [r["gold"] for r in rows]
        scores = queries @ _tensor(index.vectors(golds), queries).T
        logp, _ = model.answer_logprobs(questions, [[index.text(g)] for g in golds], answers)
        loss = gold_passage_loss(scores, logp[:, 0], config.temperature)
        return loss, {"loss": float(loss.detach()), "gold_nll": -float(logp[:, 0].detach().mean())}
    retrieved = [index.search(v, config.k) for v in queries.detach().cpu().numpy()]
    # Candidates: the top K, then the gold chunk when retrieval missed it (contrastive term only).
    candidates = [ids + ([r["gold"]] if r["gold"] not in ids else []) for ids, r in zip(retrieved, rows)]
    width = max(len(c) for c in candidates)
    scores = torch.zeros((len(rows), width), device=queries.device)
    mask = torch.zeros((len(rows), width), dtype=torch.bool, device=queries.device)
    for b, ids in enumerate(candidates):
        scores[b, : len(ids)] = queries[b] @ _tensor(index.vectors(ids), queries).T
        mask[b, : len(ids)] = True
    parts: dict[str, float] = {"gold_retrieved": float(np.mean([r["gold"] in ids for ids, r in zip(retrieved, rows)]))}
    loss = torch.zeros((), device=queries.device)
    if config.variant in ("e2e", "generator"):
        logp, logp_mask = model.answer_logprobs(questions, [[index.text(i) for i in ids] for ids in retrieved], answers)
        top = scores[:, : logp.shape[1]]
        marginal = rag_sequence_loss(top if config.variant == "e2e" else top.detach(), logp, config.temperature, logp_mask)
        loss = loss + marginal
        parts["marginal_nll"] = float(marginal.detach())
    if config.variant in ("e2e", "retriever") and config.contrastive_weight > 0:
        target = torch.tensor([ids.index(r["gold"]) for ids, r in zip(candidates, rows)], device=queries.device)
        contrastive = contrastive_loss(scores, target, config.temperature, mask)
        loss = loss + config.contrastive_weight * contrastive
        parts["contrastive"] = float(contrastive.detach())
    parts["loss"] = float(loss.detach())
    return loss, parts


def _tensor(array: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(np.asarray(array), dtype=like.dtype, device=like.device)


def load_rag_model(collection: Collection, config: RagTrainConfig, home: str | Path | None = None,
                   device: str | None = None) -> RagModel:
    """The collection's live query encoder (a private copy) and, when it trains, its generator
    with fresh LoRA adapters."""
    from ragtune.models.loading import best_device, sentence_transformer
    from ragtune.train.embedder import EmbedderTrainConfig, _add_lora

    device = best_device(device)
    encoder = copy.deepcopy(sentence_transformer(collection.embedder.config.model, device))
    if config.retriever_method == "lora" and config.trains_retriever:
        _add_lora(encoder, EmbedderTrainConfig(method="lora"))
    encoder.requires_grad_(config.trains_retriever)
    if config.retriever_method == "lora" and config.trains_retriever:  # get_peft_model froze the base again
        for name, p in encoder.named_parameters():
            p.requires_grad = "lora_" in name
    generator = tokenizer = None
    if config.variant != "retriever":
        from peft import get_peft_model
        from transformers import AutoTokenizer

        from ragtune.models.generator import base_model_path
        from ragtune.train.methods import get_method

        lora = get_method("lora")
        path = base_model_path(collection.pipeline.generator.model, home)
        tokenizer = AutoTokenizer.from_pretrained(path)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        generator = lora.load_base(path, device).to(device)
        if config.trains_generator:
            generator = get_peft_model(generator, lora.peft_config(lora.make_options(config.generator_options), path))
        else:
            generator.requires_grad_(False)
    return RagModel(encoder, generator, tokenizer, collection.pipeline.answer, config.max_passage_tokens)


def train_rag(collection: Collection, examples: list[RagExample], config: RagTrainConfig | None = None,
              home: str | Path | None = None, device: str | None = None,
              on_progress: Callable[[str, int, int], None] | None = None) -> RagTrainResult:
    """Train per ``config`` on ``examples``; nothing is saved until ``result.save(...)`` (a failed
    run drops its training index version)."""
    from datasets import Dataset
    from transformers import TrainerCallback, TrainingArguments

    from ragtune.models.loading import best_device
    from ragtune.train import run_trainer

    config = config or RagTrainConfig()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # The loss calls the two models' own methods, which a DistributedDataParallel wrapper
        # would bypass (no gradient sync): refuse rather than train each rank on its own.
        raise InputError("train rag runs in one process (one GPU); launch it without torchrun / accelerate")
    if not examples:
        raise InputError("no training examples: every question was unanswerable or its context is not in the collection")
    device = best_device(device)
    model = load_rag_model(collection, config, home, device)
    index = TrainingIndex.copy_of_live(collection) if config.trains_retriever else TrainingIndex.live(collection)

    def reindex() -> None:
        was_training = model.encoder.training
        index.refresh(lambda texts: model.encoder.encode_document(texts, batch_size=64, normalize_embeddings=True,
                                                                  convert_to_numpy=True), on_progress=on_progress)
        model.encoder.train(was_training)  # encode() switched it to eval mode

    class Reindex(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if (config.trains_retriever and config.refresh_every and state.global_step % config.refresh_every == 0
                    and state.global_step < state.max_steps):
                reindex()

    try:
        with tempfile.TemporaryDirectory(prefix="ragtune-rag-") as scratch:
            args = TrainingArguments(**config.hf_arguments(
                scratch, device, logging_steps=5, remove_unused_columns=False,
                dataloader_drop_last=len(examples) > config.batch_size))
            trainer = RagTrainer.make(model=model, args=args, train_dataset=Dataset.from_list([e.to_dict() for e in examples]),
                                      data_collator=lambda rows: {"rows": rows}, callbacks=[Reindex()],
                                      rag_config=config, index=index)
            output, seconds = run_trainer(trainer)
        if config.trains_retriever:
            reindex()  # the handed-over version is indexed by the trained encoder
    except BaseException:
        index.discard()
        raise
    return RagTrainResult(config, model, index, output.global_step, float(output.training_loss), seconds,
                          _summarise(trainer.parts), collection.embedder.config.model, collection.pipeline.generator.model)


def _summarise(parts: list[dict[str, float]]) -> dict[str, float]:
    """Each term's mean over the first and the last quarter of steps (is it going down?)."""
    if not parts:
        return {}
    q = max(1, len(parts) // 4)
    out = {}
    for key in parts[0]:
        out[f"{key}.first"] = statistics.fmean(p[key] for p in parts[:q] if key in p)
        out[f"{key}.last"] = statistics.fmean(p[key] for p in parts[-q:] if key in p)
    return out
