"""Shared by the benchmark scripts: machine description, timing helpers, markdown reports."""

from __future__ import annotations

import json
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
RESULTS = REPO / "benchmarks" / "results"
# Long runs keep their cache outside a fresh checkout when RAGTUNE_BENCH_CACHE points there.
CACHE = Path(os.environ.get("RAGTUNE_BENCH_CACHE", REPO / "benchmarks" / ".cache"))


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    import torch

    return (f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, no GPU used; Python {platform.python_version()}, "
            f"torch {torch.__version__}, {platform.system()} {platform.release()}")


def git_commit() -> str:
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def percentiles(samples_s: list[float]) -> tuple[float, float]:
    ms = np.array(samples_s) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 95))


class Timer:
    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start


def write_report(name: str, title: str, body: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.md"
    cmd = "python " + " ".join([f"benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]])
    path.write_text(
        f"# {title}\n\n"
        f"- command: `{cmd}` (from the repo root, in `.venv`)\n"
        f"- machine: {machine()}\n"
        f"- commit: {git_commit()}, run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n\n"
        f"{body.strip()}\n"
    )
    print(f"wrote {path}")
    return path


def table(headers: list[str], rows: list[list]) -> str:
    from ragtune.evaluate.runs import markdown_table

    return markdown_table(headers, rows)


class Steps:
    """Each step of a long benchmark runs once; its result and seconds are kept in steps.json, so a
    stopped run, re-run, continues with the first unfinished step (a stop loses no step)."""

    def __init__(self, home: Path):
        self.path = home / "steps.json"
        self.log: dict = json.loads(self.path.read_text()) if self.path.exists() else {}
        self.asked: list[str] = []  # this run's steps, in order: the cache may hold others' (other settings)

    def seconds(self) -> dict[str, float]:
        """Seconds of each step this run asked for (computed now or by the run it resumes)."""
        return {name: self.log[name]["seconds"] for name in self.asked if name in self.log}

    def __call__(self, name: str, fn: Callable):
        if name not in self.asked:
            self.asked.append(name)
        if name in self.log:
            return self.log[name]["result"]
        print(f"\n== {name}", flush=True)
        start = time.perf_counter()
        result = fn()
        self.log[name] = {"result": result, "seconds": round(time.perf_counter() - start, 1)}
        self.path.write_text(json.dumps(self.log, indent=2, default=str))
        return result


def progress(event: str, done: int, total: int) -> None:
    print(f"\r{event} {done}/{total}", end="", flush=True)


def split_squad_articles(examples: list, seed: int = 0) -> dict[str, list]:
    """SQuAD v1.1 dev by article, the split every benchmark that trains on SQuAD shares: 8 test
    articles no model ever trains on, 4 dev articles (learning curves, settings), 36 train."""
    articles = sorted({ex.article_id for ex in examples})
    random.Random(seed).shuffle(articles)
    sides = {"test": set(articles[:8]), "dev": set(articles[8:12])}
    out: dict[str, list] = {"train": [], "dev": [], "test": []}
    for ex in examples:
        side = next((s for s, arts in sides.items() if ex.article_id in arts), "train")
        out[side].append(ex)
    return out


def squad_collection(step: Steps, home: Path, name: str, sides: tuple[str, ...], max_queries: int | None = None):
    """The paragraphs of the SQuAD articles of ``sides`` (of :func:`split_squad_articles`), chunked
    as ingest chunks, as an indexed public collection ``name`` with their questions as its test
    queries (``max_queries``: a seeded sample of them). Returns the collection and its BEIR folder."""
    from ragtune.collection import Collection
    from ragtune.data.beir import read_qrels, read_queries, write_qrels, write_queries
    from ragtune.data.squad import load_squad, squad_to_beir
    from ragtune.ingest.sync import ingest
    from ragtune.types import Acl

    source = home / f"{name}-beir"
    if not (source / "corpus.jsonl").exists():
        from transformers import AutoTokenizer

        from ragtune.config import PipelineConfig
        from ragtune.ingest.chunking import Chunker
        from ragtune.models.loading import resolve_model

        split = split_squad_articles(load_squad(DATA / "squad" / "dev-v1.1.json"))
        examples = [ex for side in sides for ex in split[side]]
        pipeline = PipelineConfig()
        tokenizer = AutoTokenizer.from_pretrained(resolve_model(pipeline.embedder.model))
        # Every paragraph of the articles is in the corpus; only the sampled questions are queries.
        squad_to_beir(examples, source, Chunker.from_tokenizer(pipeline.chunking, tokenizer))
        if max_queries is not None:
            chosen = {ex.id for ex in random.Random(0).sample(examples, min(max_queries, len(examples)))}
            queries = [q for q in read_queries(source) if q["_id"] in chosen]
            qrels = read_qrels(source, "test")
            write_queries(source, queries)
            write_qrels(source, "test", [(q["_id"], d, r) for q in queries for d, r in qrels[q["_id"]].items()])
    coll = Collection.create(home, name, exist_ok=True)
    step(f"{name}: index", lambda: ingest(coll, source, Acl(public=True), progress).chunks)
    coll.index_versions.ensure_live_recorded(coll.pipeline.embedder.model)
    return coll, source


WRITER_HOME = CACHE / "qgen-writer"  # benchmarks/qgen_writer.py's home: its trained writer is adapter "qgen"


def trained_writer(instead: str):
    """The question writer benchmarks/qgen_writer.py trained, or an exit that says to run it first
    (``instead``: the flag that does without it)."""
    from ragtune.models.adapters import AdapterRegistry
    from ragtune.models.generator import LocalGenerator

    if not (AdapterRegistry(WRITER_HOME).path("qgen") / "adapter_config.json").exists():
        raise SystemExit(f"no trained writer under {WRITER_HOME}: run benchmarks/qgen_writer.py first (or pass {instead})")
    return LocalGenerator(home=WRITER_HOME, adapter="qgen")
