"""Training: embedder, reranker, generator (PEFT methods), end-to-end RAG. Each built on a Hugging Face trainer."""

from __future__ import annotations

import contextlib
import sys
import time


def run_trainer(trainer, resume_from_checkpoint: str | None = None):
    """``trainer.train()``, timed. The HF trainers print their log dicts to stdout; they go to
    stderr here so that stdout stays clean for a CLI's ``--json`` output."""
    start = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        output = trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    return output, time.perf_counter() - start
