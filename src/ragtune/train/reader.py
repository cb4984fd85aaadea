"""Train the extractive reader: a span-prediction head (start/end logits) on an encoder, from
SQuAD-format data, with the Hugging Face Trainer.

Long contexts (COVID-QA articles run to thousands of tokens) are cut into overlapping windows,
as the reader reads them at answer time (:class:`ragtune.answer.extractive.SpanReader`). A
window without the answer is labelled with the ``[CLS]`` position: the reader's "no answer".
Such windows far outnumber answer windows in long articles, so they are sampled down to
``negatives_per_positive`` per answer window. Short contexts (SQuAD paragraphs fit one window)
give no such windows, so SQuAD-v2-style unanswerable pairs are added: a share
(``no_answer_fraction``) of the questions is also shown another paragraph of its article that does
not contain the answer, labelled "no answer" — what lets the reader abstain at answer time
(``reader.null_margin``) on retrieved passages that do not hold the answer.

Windows are padded per batch, not to ``max_length``: SQuAD paragraphs are about half a window, and
padding is pure cost on a CPU. ``checkpoint_dir`` makes a long run resumable; ``evaluate`` (a
function of the reader being trained, e.g. :func:`ragtune.evaluate.reader.reading_scores` on
held-out articles) is measured before, every ``eval_every`` steps and after: the learning curve.

Example:
    >>> from ragtune.data.squad import load_squad
    >>> from ragtune.train.reader import ReaderTrainConfig, train_reader
    >>> train_reader("all-MiniLM-L6-v2", load_squad("train.json"), "models/reader", ReaderTrainConfig(max_steps=50))  # doctest: +SKIP
    >>> # then: ragtune ask --set reader.model=models/reader ...
"""

from __future__ import annotations

import json
import random
import tempfile
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragtune.data.squad import QAExample
from ragtune.data.text import normalize_answer
from ragtune.errors import InputError
from ragtune.train import run_trainer
from ragtune.train.curve import LearningCurve, ResumableArgs, last_checkpoint
from ragtune.train.embedder import TrainResult


@dataclass
class ReaderTrainConfig(ResumableArgs):
    epochs: float = 2.0
    max_length: int = 384
    stride: int = 128
    negatives_per_positive: float = 1.0  # no-answer windows of long contexts kept per answer window
    no_answer_fraction: float = 0.25  # questions also paired with a same-article paragraph lacking the answer

    def default_learning_rate(self) -> float:
        return 5e-5


def unanswerable_pairs(examples: list[QAExample], fraction: float, seed: int = 0) -> list[QAExample]:
    """For ``fraction`` of the answerable questions, the question with another paragraph of the same
    article that does not contain (a normalised form of) any of its answers, and no answer.

    >>> a = QAExample("1", "Who?", "Ann wrote it.", ["Ann"], [0], article_id="x", paragraph_index=0)
    >>> b = QAExample("2", "When?", "It was 1990.", ["1990"], [7], article_id="x", paragraph_index=1)
    >>> [(e.id, e.context, e.answers) for e in unanswerable_pairs([a, b], 1.0)]
    [('1-na', 'It was 1990.', []), ('2-na', 'Ann wrote it.', [])]
    """
    rng = random.Random(seed)
    paragraphs: dict[str, dict[int, str]] = defaultdict(dict)
    for ex in examples:
        paragraphs[ex.article_id][ex.paragraph_index] = ex.context
    out = []
    for ex in examples:
        if not ex.answers or rng.random() >= fraction:
            continue
        golds = [normalize_answer(a) for a in ex.answers]
        others = [c for p, c in sorted(paragraphs[ex.article_id].items())
                  if p != ex.paragraph_index and not any(g and g in normalize_answer(c) for g in golds)]
        if others:
            out.append(QAExample(f"{ex.id}-na", ex.question, rng.choice(others), [], [], ex.title, ex.article_id))
    return out


def reader_features(tokenizer, examples: list[QAExample], config: ReaderTrainConfig) -> list[dict]:
    """Tokenised windows with ``start_positions`` / ``end_positions`` (0 = no answer here)."""
    rng = random.Random(config.seed)
    positives: list[dict] = []
    negatives: list[dict] = []
    unanswerable: list[dict] = []
    for ex in examples + unanswerable_pairs(examples, config.no_answer_fraction, config.seed):
        enc = tokenizer(ex.question, ex.context, truncation="only_second", max_length=config.max_length,
                        stride=config.stride, return_overflowing_tokens=True, return_offsets_mapping=True)
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
            (positives if start_tok else unanswerable if not ex.answers else negatives).append(row)
    n_neg = min(len(negatives), round(config.negatives_per_positive * max(1, len(positives))))
    rows = positives + rng.sample(negatives, n_neg) + unanswerable
    rng.shuffle(rows)
    return rows


def answer_tokens_p99(tokenizer, examples: list[QAExample]) -> int:
    """The 99th-percentile length, in tokens, of the examples' first answers (0 without any): the
    span cap the trained reader will use (:func:`ragtune.answer.extractive.recorded_answer_tokens`)."""
    lengths = sorted(len(tokenizer(ex.answers[0], add_special_tokens=False)["input_ids"])
                     for ex in examples if ex.answers)
    return lengths[min(len(lengths) - 1, int(0.99 * len(lengths)))] if lengths else 0


def write_reader_meta(out_dir: Path, answer_tokens: int, examples: int, base: str) -> dict[str, Any]:
    """``ragtune-reader.json``: how long the answers it was trained on are (continued training
    keeps the longer of its base's and its data's: a reader trained on SQuAD, then on a collection)."""
    from ragtune.answer.extractive import READER_META

    meta = {"answer_tokens_p99": answer_tokens, "examples": examples, "base": base}
    (out_dir / READER_META).write_text(json.dumps(meta, indent=2))
    return meta


def train_reader(base_model: str, examples: list[QAExample], out_dir: str | Path,
                 config: ReaderTrainConfig | None = None, device: str | None = None,
                 evaluate: Callable[[Any], dict[str, float]] | None = None,
                 checkpoint_dir: str | Path | None = None,
                 on_progress: Callable[[str, int, int], None] | None = None) -> TrainResult:
    """Train on ``examples`` and save model + tokenizer to ``out_dir``. ``base_model``: a plain
    encoder (a fresh span head) or a trained reader (continue, e.g. on a collection's synthetic QA).
    ``evaluate(reader)`` → metrics, measured into the learning curve (``metrics["curve"]``, with
    ``before`` / ``after``); ``checkpoint_dir`` checkpoints there and resumes when called again."""
    import torch
    from datasets import Dataset
    from transformers import (
        AutoModelForQuestionAnswering,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        TrainingArguments,
        set_seed,
    )

    from ragtune.answer.extractive import SpanReader, recorded_answer_tokens
    from ragtune.models.loading import best_device, resolve_model

    config = config or ReaderTrainConfig()
    path = resolve_model(base_model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    rows = reader_features(tokenizer, examples, config)
    if not rows:
        raise InputError("no training windows: the examples are empty")
    dev = best_device(device)
    # The span head is new: seeded here, since the Trainer seeds only after the model exists (an
    # unseeded head made a 2-step reader beat the baseline in one run in ~30 and not the next).
    set_seed(config.seed)
    model = AutoModelForQuestionAnswering.from_pretrained(path, dtype=torch.float32)
    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None
    curve = LearningCurve.beside(ckpt)
    span_cap = max(answer_tokens_p99(tokenizer, examples), recorded_answer_tokens(path))

    def measure(step: int) -> None:
        if evaluate is not None:
            was_training = model.training
            model.eval()
            curve.add(step, **evaluate(SpanReader.wrap(model, tokenizer, str(out_dir), dev, max_answer_tokens=span_cap,
                                                       max_length=config.max_length, stride=config.stride)))
            model.train(was_training)

    if not curve.points:
        measure(0)

    class Progress(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if config.eval_every and state.global_step % config.eval_every == 0:
                measure(state.global_step)
            if on_progress:
                on_progress("reader steps", state.global_step, state.max_steps)

    with tempfile.TemporaryDirectory(prefix="ragtune-reader-") as scratch:
        args = TrainingArguments(**config.hf_arguments(str(ckpt or scratch), dev, data_seed=None, logging_steps=20,
                                                       **config.checkpointing(ckpt)))
        trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                          data_collator=DataCollatorWithPadding(tokenizer), callbacks=[Progress()])
        resume = last_checkpoint(ckpt)
        output, seconds = run_trainer(trainer, resume_from_checkpoint=resume)
    measure(output.global_step)
    trainer.model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    reader_meta = write_reader_meta(Path(out_dir), span_cap, len(examples), base_model)
    n = sum(p.numel() for p in model.parameters())
    metrics: dict[str, Any] = {"windows": len(rows), "answer_windows": sum(1 for r in rows if r["start_positions"]),
                               "answer_tokens_p99": reader_meta["answer_tokens_p99"]}
    if curve.points:
        metrics.update(before=curve.points[0], after=curve.points[-1], curve=list(curve.points))
    if resume:
        metrics["resumed_from"] = resume
    return TrainResult(Path(out_dir), output.global_step, float(output.training_loss), seconds, n, n, metrics)
