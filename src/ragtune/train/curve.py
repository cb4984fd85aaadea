"""What a long training run keeps beside its checkpoints: the held-out learning curve, and where
to resume.

A run that does not finish in one sitting (SQuAD-scale reranker and reader training on a CPU) is
re-run with the same ``checkpoint_dir``: the Hugging Face trainer resumes from the newest
checkpoint, and the curve, appended one JSON line per measurement, continues where it stopped
instead of starting over (a step already measured is not measured twice).

Example:
    >>> from ragtune.train.curve import LearningCurve
    >>> curve = LearningCurve.load(None)
    >>> curve.add(0, mrr=0.3); curve.add(100, mrr=0.8); curve.add(100, mrr=0.9)
    >>> curve.points, curve.first("mrr"), curve.last("mrr")
    ([{'step': 0, 'mrr': 0.3}, {'step': 100, 'mrr': 0.8}], 0.3, 0.8)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragtune.train.args import TrainingArgs


@dataclass
class ResumableArgs(TrainingArgs):
    """A trainer that measures a held-out curve and, given a checkpoint folder, resumes."""

    eval_every: int = 0  # steps between held-out measurements (0: only before and after)
    checkpoint_every: int = 200  # with a checkpoint_dir: steps between checkpoints

    def checkpointing(self, folder: Path | None) -> dict[str, Any]:
        """Extra ``TrainingArguments`` keywords: save every ``checkpoint_every`` steps into ``folder``."""
        if folder is None:
            return {}
        return {"save_strategy": "steps", "save_steps": self.checkpoint_every, "save_total_limit": 2}


@dataclass
class LearningCurve:
    """Held-out metrics by step, one JSON line each in ``path`` (None: kept in memory only)."""

    path: Path | None
    points: list[dict[str, float]] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path | None) -> "LearningCurve":
        points = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] \
            if path is not None and path.exists() else []
        return cls(path, points)

    @classmethod
    def beside(cls, checkpoint_dir: Path | None) -> "LearningCurve":
        """The curve of the run checkpointed in ``checkpoint_dir`` (created if missing)."""
        if checkpoint_dir is None:
            return cls(None)
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        return cls.load(checkpoint_dir / "curve.jsonl")

    def add(self, step: int, **metrics: float) -> None:
        if any(p["step"] == step for p in self.points):
            return
        point = {"step": step, **{k: round(v, 4) for k, v in metrics.items()}}
        self.points.append(point)
        if self.path is not None:
            with self.path.open("a") as f:
                f.write(json.dumps(point) + "\n")

    def first(self, key: str) -> float:
        return self.points[0][key]

    def last(self, key: str) -> float:
        return self.points[-1][key]


def last_checkpoint(folder: Path | None) -> str | None:
    """The newest ``checkpoint-N`` in ``folder``, to resume from (None: start fresh)."""
    if folder is None or not folder.exists():
        return None
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(folder))
