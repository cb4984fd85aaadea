"""Answers that are right offline: trained extractive readers vs the sentence baseline and the
local generator (raw and behind the grounding guard), in one run on the same questions.

Readers (MiniLM-L6 + a span head; SQuAD v1.1 dev split by article as in benchmarks/reranker.py,
the 8 test articles never trained on):
  sentence-baseline    no training: the context sentence closest to the question
  reader-squad         trained on the 36 SQuAD train articles (+ SQuAD-v2-style unanswerable pairs)
  reader-domain        reader-squad + the COVID-QA collection's synthetic QA (`synth answers`, no labels)
  reader-supervised    reader-squad + the gold QA of the COVID-QA *training* articles
Generators: smollm2 (the packaged SmolLM2-135M-Instruct) and smollm2-guarded (the same answers
through the grounding guard).

Measured: COVID-QA held-out articles, retrieve-then-answer through `ask`'s path, plus questions the
corpus cannot answer (gold = abstain); SQuAD held-out articles with the gold context (readers).

Every step is cached under benchmarks/.cache/<--cache>/ (the reader trainings checkpoint and
resume), so the script can be stopped and re-run until it completes.

Run from the repo root:  .venv/bin/python benchmarks/answers.py
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import CACHE, DATA, Steps, progress, split_squad_articles  # noqa: E402

from ragtune.data.squad import QAExample, load_squad  # noqa: E402
from ragtune.evaluate.reader import reading_scores  # noqa: E402
from ragtune.train.reader import ReaderTrainConfig, train_reader, unanswerable_pairs  # noqa: E402

BASE = "all-MiniLM-L6-v2"


def dev_set(examples: list[QAExample], n: int, seed: int = 0) -> list[QAExample]:
    """``n`` answerable dev questions and a quarter as many unanswerable pairs (abstention)."""
    chosen = random.Random(seed).sample(examples, min(n, len(examples)))
    return chosen + unanswerable_pairs(examples, 1.0, seed)[: n // 4]


def reader_squad(step: Steps, home: Path, squad: dict[str, list[QAExample]], args) -> str:
    out = home / "reader-squad"
    dev = random.Random(0).sample(squad["dev"], min(args.dev_questions, len(squad["dev"])))

    def train() -> dict:
        config = ReaderTrainConfig(epochs=args.epochs, batch_size=16, eval_every=args.eval_every, checkpoint_every=100)
        r = train_reader(BASE, squad["train"], out / "model", config, evaluate=lambda reader: reading_scores(reader, dev),
                         checkpoint_dir=out / "checkpoints", on_progress=progress)
        return {"path": str(out / "model"), "steps": r.steps, "loss": r.train_loss, "seconds": r.seconds,
                "windows": r.metrics["windows"], "curve": r.metrics["curve"]}

    return step("train reader-squad (SQuAD train articles)", train)["path"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--dev-questions", type=int, default=300)
    ap.add_argument("--until", choices=["reader-squad"], help="stop after this step (the rest resumes later)")
    ap.add_argument("--cache", default="answers-home")
    args = ap.parse_args()
    home = CACHE / args.cache
    home.mkdir(parents=True, exist_ok=True)
    step = Steps(home)
    squad = split_squad_articles(load_squad(DATA / "squad" / "dev-v1.1.json"))
    reader_squad(step, home, squad, args)
    if args.until == "reader-squad":
        return


if __name__ == "__main__":
    main()
