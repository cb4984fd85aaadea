"""COVID-QA: end-to-end RAG training against its baselines, same data, same budget.

``covidqa-dev.json`` is split **by article** (no article has questions on both sides). Five
systems, each evaluated on the same held-out questions:

- base: MiniLM retriever + SmolLM2-135M-Instruct, untouched;
- retriever: the query encoder trained with the gold-chunk contrastive loss alone;
- generator: LoRA on the generator with the RAG-Sequence marginal loss, retriever frozen;
- dalm: the DALM-style baseline (generator sees the gold passage only; retriever in-batch contrastive);
- e2e: both trained with the RAG-Sequence marginal loss + the contrastive term, index re-encoded
  every ``--refresh-every`` steps (ragtune's `train rag` default recipe).

Every trained system gets the same steps × batch of the same training questions and the same
learning rates (fixed before the run, never tuned on the held-out split). Measured: retrieval
hit@1 / hit@5 (dense, what is trained, and hybrid, what `ask` uses) on every held-out question,
and EM / F1 through the real answer path on a seeded sample of them; paired differences vs the
base with a randomisation test.

Every finished system is cached under benchmarks/.cache/rag-e2e-home/results/<setting>/, so a
stopped run resumes. Run from the repo root:

    .venv/bin/python benchmarks/rag_e2e.py [--steps 24 --batch-size 4 --eval-questions 30]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import CACHE, DATA, machine, write_report  # noqa: E402
from generator import PIPELINE, answer_eval, cached  # noqa: E402  (the same answer path and settings)

from ragtune.collection import Collection  # noqa: E402
from ragtune.data.spans import answer_rank  # noqa: E402
from ragtune.data.squad import (  # noqa: E402
    load_squad,
    sample,  # noqa: E402
    split_by_article,
)
from ragtune.evaluate.compare import compare_paired  # noqa: E402
from ragtune.ingest.datasets import index_contexts  # noqa: E402
from ragtune.retrieve import Searcher  # noqa: E402
from ragtune.train.rag import RagTrainConfig, rag_examples, train_rag  # noqa: E402
from ragtune.types import ServicePrincipal  # noqa: E402

VARIANTS = ["retriever", "generator", "dalm", "e2e"]


def retrieval_eval(coll: Collection, examples) -> dict:
    """Per-question hit@1 / hit@5 for dense and hybrid retrieval on ``coll``'s version."""
    searcher = Searcher(coll)
    principal = ServicePrincipal(acl=tuple(coll.acl_tokens()))
    per: dict[str, dict[str, float]] = {}
    for mode in ("dense", "hybrid"):
        for cut in (1, 5):
            per[f"{mode} hit@{cut}"] = {}
        for ex in examples:
            rank = answer_rank(searcher.search(ex.question, principal, mode=mode, k=5), ex)
            for cut in (1, 5):
                per[f"{mode} hit@{cut}"][ex.id] = float(rank is not None and rank <= cut)
    return {"retrieval": {m: sum(v.values()) / len(v) for m, v in per.items()}, "per": per}


def evaluate(coll: Collection, home: Path, version: str | None, adapter: str | None, held, answered) -> dict:
    view = coll.at_version(version) if version else coll
    try:
        out = retrieval_eval(view, held)
        overrides = [f"generator.adapter={adapter}"] if adapter else []
        out.update(answer_eval(view, home, overrides, answered))
        return out
    finally:
        if version:
            view.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=24, help="optimiser steps per trained system")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("-k", type=int, default=4, help="passages marginalised over")
    ap.add_argument("--refresh-every", type=int, default=12)
    ap.add_argument("--retriever-lr", type=float, default=5e-5)
    ap.add_argument("--generator-lr", type=float, default=5e-4)
    ap.add_argument("--eval-fraction", type=float, default=0.15, help="articles held out")
    ap.add_argument("--eval-questions", type=int, default=30, help="held-out questions answered (EM/F1)")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--home", type=Path, default=CACHE / "rag-e2e-home")
    ap.add_argument("--report", default="rag_e2e", help="name under benchmarks/results/ ('' prints only)")
    args = ap.parse_args()
    home = args.home
    home.mkdir(parents=True, exist_ok=True)

    covid = load_squad(DATA / "covidqa" / "covidqa-dev.json")
    train_all, held_all = split_by_article(covid, args.eval_fraction, seed=0)
    answered = sample(held_all, args.eval_questions, seed=1)
    coll = Collection.create(home, "covidqa", exist_ok=True)
    coll.pipeline = coll.pipeline.with_overrides(["generator.model=SmolLM2-135M-Instruct", *PIPELINE])
    index_contexts(coll, covid, "covidqa", home)
    triples, skipped = rag_examples(coll, train_all)
    held = [ex for ex in held_all if ex.answers]

    setting = (f"steps{args.steps}-b{args.batch_size}-k{args.k}-r{args.refresh_every}-lr{args.retriever_lr}-{args.generator_lr}"
               f"-held{args.eval_fraction}-eval{args.eval_questions}")
    done = home / "results" / setting
    results = {"base": cached(done, "base", lambda: evaluate(coll, home, None, None, held, answered))}
    for variant in args.variants.split(","):
        def run(variant=variant) -> dict:
            config = RagTrainConfig(variant=variant, k=args.k, max_steps=args.steps, batch_size=args.batch_size,
                                    refresh_every=args.refresh_every, retriever_lr=args.retriever_lr,
                                    generator_lr=args.generator_lr)
            start = time.perf_counter()
            result = train_rag(coll, triples, config, home)
            seconds = time.perf_counter() - start
            saved = result.save(coll, f"rag-{variant}", home, overwrite=True, info={"benchmark": setting})
            info = {"train_seconds": round(result.seconds, 1), "wall_seconds": round(seconds, 1),
                    "refreshes": result.index.refreshes, "parts": result.parts, **saved}
            del result
            return {**info, **evaluate(coll, home, saved["index_version"], saved["adapter"], held, answered)}

        results[variant] = cached(done, variant, run)
    report(results, args, triples, skipped, len(train_all), held, answered)


def report(results: dict, args, triples, skipped: int, n_train: int, held, answered) -> None:
    base = results["base"]
    measures = ["dense hit@1", "dense hit@5", "hybrid hit@1", "hybrid hit@5"]
    rows = []
    for name, r in results.items():
        m = r["metrics"]
        row = [name] + [f"{r['retrieval'][k]:.3f}" for k in measures]
        row += [f"{m['exact_match'] * 100:.1f}", f"{m['f1'] * 100:.1f}", f"{m.get('answer_in_context', 0):.2f}"]
        if name == "base":
            row += ["", "", "", ""]
        else:
            d5 = compare_paired(base["per"]["dense hit@5"], r["per"]["dense hit@5"])
            h5 = compare_paired(base["per"]["hybrid hit@5"], r["per"]["hybrid hit@5"])
            f1 = compare_paired(base["f1"], r["f1"])
            row += [f"{d5.delta:+.3f} (p={d5.p_value:.3f})", f"{h5.delta:+.3f} (p={h5.p_value:.3f})",
                    f"{f1.delta * 100:+.1f} (p={f1.p_value:.3f})", f"{r['train_seconds']:.0f}"]
        rows.append(row)
    parts = []
    for name, r in results.items():
        if "parts" in r:
            p = r["parts"]
            parts.append(f"- {name}: " + ", ".join(f"{k} {p[k + '.first']:.3f} → {p[k + '.last']:.3f}"
                                                for k in ("loss", "marginal_nll", "contrastive", "gold_nll", "gold_retrieved")
                                                if k + ".first" in p))
    ratio = {n: r["retrieval"]["dense hit@5"] / max(base["retrieval"]["dense hit@5"], 1e-9) for n, r in results.items()}
    body = f"""
Command: `.venv/bin/python benchmarks/rag_e2e.py --steps {args.steps} --batch-size {args.batch_size} -k {args.k} \
--refresh-every {args.refresh_every} --retriever-lr {args.retriever_lr} --generator-lr {args.generator_lr} \
--eval-questions {args.eval_questions}`

Machine: {machine()}.

COVID-QA dev split by article (seed 0, {args.eval_fraction:.0%} of articles held out): {n_train} training questions →
{len(triples)} triples ({skipped} skipped: no chunk holds the answer span); {len(held)} held-out questions for
retrieval, a seeded sample of {len(answered)} of them answered through `ask`'s path (`{' '.join(PIPELINE)}`,
hybrid search, greedy). Every trained system: {args.steps} steps × batch {args.batch_size} (the same
{args.steps * args.batch_size} training questions in the same order), K = {args.k} passages, τ = 0.05, retriever lr
{args.retriever_lr} (full fine-tune), generator lr {args.generator_lr} (LoRA r=16), the index re-encoded every
{args.refresh_every} steps and at the end (retriever-training variants).

| system | dense hit@1 | dense hit@5 | hybrid hit@1 | hybrid hit@5 | EM | F1 | answer in context | Δ dense hit@5 vs base | Δ hybrid hit@5 | Δ F1 | train s |
|---|---|---|---|---|---|---|---|---|---|---|---|
""" + "\n".join("| " + " | ".join(r) + " |" for r in rows) + """

Dense hit@5 ratio vs base: """ + ", ".join(f"{n} {v:.3f}" for n, v in ratio.items() if n != "base") + """.

Loss terms, mean over the first → last quarter of steps (training batches, not held out):

""" + "\n".join(parts) + "\n"
    if args.report:
        write_report(args.report, "End-to-end RAG training on COVID-QA (by-article split)", body)
    else:
        print(body)


if __name__ == "__main__":
    main()
