"""Run directories: every evaluation leaves one behind, so any two can be compared later.

Layout of ``runs/<id>/``::

    config.json        what was run: kind, dataset, split, pipeline, git commit, time
    metrics.json       {system: {measure: mean}}
    per_query.jsonl    one line per (system, query) with every measure
    run.<system>.trec  the ranking, TREC format (retrieval runs)
    summary.md         the table a person reads
    *.png              plots (recall@k curves, per-query deltas)

Example:
    >>> import tempfile
    >>> from ragtune.evaluate.runs import RunDir
    >>> run = RunDir.create(tempfile.mkdtemp(), "retrieval", {"dataset": "toy"})
    >>> run.write_metrics({"bm25": {"nDCG@10": 0.5}}, {"bm25": {"nDCG@10": {"q1": 0.5}}})
    >>> RunDir.open(run.path).metrics()["bm25"]["nDCG@10"]
    0.5
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from ragtune.errors import MissingInputError

PerQuery = dict[str, dict[str, dict[str, float]]]  # system -> measure -> query id -> value


class RunDir:
    def __init__(self, path: Path):
        self.path = path

    @classmethod
    def create(cls, runs_root: str | Path, kind: str, config: dict[str, Any]) -> "RunDir":
        run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{kind}-{uuid.uuid4().hex[:6]}"
        path = Path(runs_root) / run_id
        path.mkdir(parents=True)
        meta = {"id": run_id, "kind": kind, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "git_commit": git_commit(), **config}
        (path / "config.json").write_text(json.dumps(meta, indent=2, default=str))
        return cls(path)

    @classmethod
    def open(cls, path: str | Path) -> "RunDir":
        path = Path(path)
        if not (path / "metrics.json").is_file():
            raise MissingInputError(f"{path}: not an evaluation run directory (no metrics.json)")
        return cls(path)

    @property
    def id(self) -> str:
        return self.path.name

    def config(self) -> dict[str, Any]:
        return json.loads((self.path / "config.json").read_text())

    def metrics(self) -> dict[str, dict[str, float]]:
        return json.loads((self.path / "metrics.json").read_text())

    def per_query(self) -> PerQuery:
        out: PerQuery = {}
        with (self.path / "per_query.jsonl").open() as f:
            for line in f:
                row = json.loads(line)
                for measure, value in row["metrics"].items():
                    out.setdefault(row["system"], {}).setdefault(measure, {})[row["query_id"]] = value
        return out

    def write_metrics(self, metrics: dict[str, dict[str, float]], per_query: PerQuery) -> None:
        (self.path / "metrics.json").write_text(json.dumps(metrics, indent=2))
        with (self.path / "per_query.jsonl").open("w") as f:
            for system, by_measure in per_query.items():
                qids = sorted({q for values in by_measure.values() for q in values})
                for q in qids:
                    row = {"system": system, "query_id": q, "metrics": {m: v[q] for m, v in by_measure.items() if q in v}}
                    f.write(json.dumps(row) + "\n")

    def write_summary(self, text: str) -> None:
        (self.path / "summary.md").write_text(text)


def git_commit() -> str:
    try:
        return subprocess.check_output(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, text=True,
                                       stderr=subprocess.DEVNULL).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows])
