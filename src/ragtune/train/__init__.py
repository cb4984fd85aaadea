"""Training: embedder, reranker, generator (PEFT methods), end-to-end RAG. Each built on a Hugging Face trainer."""

from __future__ import annotations

import contextlib
import sys
import time


def run_trainer(trainer, resume_from_checkpoint: str | None = None, release: bool = True):
    """``trainer.train()``, timed. The HF trainers print their log dicts to stdout; they go to
    stderr here so that stdout stays clean for a CLI's ``--json`` output."""
    start = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        output = trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    if release:
        release_autocast(trainer.model)
    return output, time.perf_counter() - start


def release_autocast(model) -> None:
    """Under bf16 mixed precision accelerate wraps the model's forward in autocast; the trained
    model handed back (and used in-process) must compute like the one saved and reloaded. (trl
    patches the same forward for its evaluation, so its trainer releases only after the last one.)"""
    from accelerate.utils import extract_model_from_parallel

    extract_model_from_parallel(model, keep_fp32_wrapper=False)
