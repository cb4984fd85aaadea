"""Shared by the benchmark scripts: machine description, timing helpers, markdown reports."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

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
