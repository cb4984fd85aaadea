"""Train the extractive reader: a span-prediction head (start/end logits) on an encoder, from
SQuAD-format data, with the Hugging Face Trainer.

Long contexts (COVID-QA articles run to thousands of tokens) are cut into overlapping windows,
as the reader reads them at answer time (:class:`ragtune.answer.extractive.SpanReader`). A
window without the answer is labelled with the ``[CLS]`` position: the reader's "no answer".
Such windows far outnumber answer windows in long articles, so they are sampled down to
``negatives_per_positive`` per answer window.

Example:
    >>> from ragtune.data.squad import load_squad
    >>> from ragtune.train.reader import ReaderTrainConfig, train_reader
    >>> train_reader("all-MiniLM-L6-v2", load_squad("train.json"), "models/reader", ReaderTrainConfig(max_steps=50))  # doctest: +SKIP
    >>> # then: ragtune ask --set answer.mode=extractive --set reader.model=models/reader ...
"""

from __future__ import annotations

import random
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ragtune.data.squad import QAExample
from ragtune.errors import InputError
from ragtune.train import run_trainer
from ragtune.train.args import TrainingArgs
from ragtune.train.embedder import TrainResult


@dataclass
class ReaderTrainConfig(TrainingArgs):
    epochs: float = 2.0
    learning_rate: float | None = 5e-5
    max_length: int = 384
    stride: int = 128
    negatives_per_positive: float = 1.0


def reader_features(tokenizer, examples: list[QAExample], config: ReaderTrainConfig) -> list[dict]:
    """Tokenised windows with ``start_positions`` / ``end_positions`` (0 = no answer here)."""
    rng = random.Random(config.seed)
    positives: list[dict] = []
    negatives: list[dict] = []
    for ex in examples:
        enc = tokenizer(ex.question, ex.context, truncation="only_second", max_length=config.max_length,
                        stride=config.stride, return_overflowing_tokens=True, return_offsets_mapping=True,
                        padding="max_length")
        for w in range(len(enc["input_ids"])):
            seq = enc.sequence_ids(w)
            offsets = enc["offset_mapping"][w]
            ctx = [i for i, s in enumerate(seq) if s == 1]
            start_tok = end_tok = 0
            if ex.answers and ctx:
                a_start = ex.answer_starts[0]
                a_end = a_start + len(ex.answers[0])
                if offsets[ctx[0]][0] <= a_start and offsets[ctx[-1]][1] >= a_end:
                    start_tok = next(i for i in ctx if offsets[i][1] > a_start)
                    end_tok = next(i for i in reversed(ctx) if offsets[i][0] < a_end)
            row = {k: enc[k][w] for k in enc if k not in ("offset_mapping", "overflow_to_sample_mapping")}
            row.update(start_positions=start_tok, end_positions=end_tok)
            (positives if start_tok else negatives).append(row)
    n_neg = min(len(negatives), int(round(config.negatives_per_positive * max(1, len(positives)))))
    rows = positives + rng.sample(negatives, n_neg)
    rng.shuffle(rows)
    return rows


def train_reader(base_model: str, examples: list[QAExample], out_dir: str | Path,
                 config: ReaderTrainConfig | None = None, device: str | None = None) -> TrainResult:
    import torch
    from datasets import Dataset
    from transformers import (
        AutoModelForQuestionAnswering,
        AutoTokenizer,
        Trainer,
        TrainingArguments,
    )

    from ragtune.models.loading import best_device, resolve_model

    config = config or ReaderTrainConfig()
    path = resolve_model(base_model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    rows = reader_features(tokenizer, examples, config)
    if not rows:
        raise InputError("no training windows: the examples are empty")
    model = AutoModelForQuestionAnswering.from_pretrained(path, dtype=torch.float32)
    with tempfile.TemporaryDirectory(prefix="ragtune-reader-") as scratch:
        args = TrainingArguments(**config.hf_arguments(scratch, best_device(device), data_seed=None, logging_steps=20))
        trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_list(rows))
        output, seconds = run_trainer(trainer)
    trainer.model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    n = sum(p.numel() for p in model.parameters())
    positives = sum(1 for r in rows if r["start_positions"])
    return TrainResult(Path(out_dir), output.global_step, float(output.training_loss), seconds, n, n,
                       {"windows": len(rows), "answer_windows": positives})
