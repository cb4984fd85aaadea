"""Label-free pipeline tuning (`ragtune tune`) against the truth: every setting the tuner tries,
its score on the collection's held-out *synthetic* questions beside its score on the corpus' real
judged queries, and the tuned pipeline vs the fixed defaults and vs BM25 alone.

Per corpus (SciFact test, COVID-QA as IR; SQuAD's 40 non-test articles as the *design* corpus on
which the tuner's bias correction was chosen): index it (public), write synthetic questions with
the packaged SmolLM2 (`synth queries`, every query kind, round-trip filtered), run the tuner on
the questions no live model learned from (train + dev here) under each bias correction (none,
keyword-poor, examples: weighted toward 8 unlabelled real queries: SciFact *train* claims, or 8
of the corpus' questions then left out of its test queries), then score each candidate setting
on the real test queries. The tuner never sees a real query's label; the real scores are only
measured here. Two readings come out of one run:

- `tuned-hybrid` vs `base-hybrid` and vs `bm25` (issue 18: on COVID-QA the label-free tuned
  pipeline should reach BM25 alone, hit@5 >= 0.783);
- how well the synthetic score ranks settings by their real score (Spearman over the candidates),
  a measure of the gate's questions themselves (issue 25).

Every step is cached under benchmarks/.cache/<--cache>/ and the script can be re-run to resume.
COVID-QA's corpus is built exactly as benchmarks/adaptation.py builds it.

Run from the repo root:  .venv/bin/python benchmarks/tuning.py [--corpora squad,covidqa,scifact]
(`--synth-only`: index and write the synthetic questions, then stop; a later run goes on.)
(`--writer trained --corpora covidqa,scifact`: the same with benchmarks/qgen_writer.py's trained writer,
under its own cache and report, tuning_trained_writer.md/json.)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import CACHE, DATA, RESULTS, Steps, progress, squad_collection, table, trained_writer, write_report  # noqa: E402
from adaptation import corpus  # noqa: E402

from ragtune.collection import Collection  # noqa: E402
from ragtune.evaluate.compare import compare_paired  # noqa: E402
from ragtune.evaluate.ir import doc_run, per_query, score_run  # noqa: E402
from ragtune.data.beir import BeirDataset, load_beir  # noqa: E402
from ragtune.evaluate.tune import CORRECTIONS, tune_pipeline  # noqa: E402
from ragtune.retrieve import Searcher  # noqa: E402
from ragtune.synth.filters import FilterConfig, filter_queries  # noqa: E402
from ragtune.synth.queries import QueryGenConfig, generate_queries  # noqa: E402
from ragtune.types import Principal  # noqa: E402

MEASURES = ["nDCG@10", "Success@5", "R@100"]
DEFAULT = "none"  # the tuner's default correction (chosen on SQuAD, the design corpus)
EXAMPLES = 8
SQUAD_QUERIES = 1000  # real SQuAD questions scored per setting (all ~9,000 would take an hour)


def user_examples(name: str, ds: BeirDataset) -> tuple[tuple[str, ...], BeirDataset]:
    """Eight unlabelled real queries and the test queries left to score: SciFact's from its train
    split (issue 18: never test), the others' drawn from the corpus' own and then left out."""
    import random

    if name == "scifact":
        train = load_beir(DATA / "scifact", "train")
        return tuple(train.queries[q] for q in random.Random(0).sample(sorted(train.queries), EXAMPLES)), ds
    chosen = random.Random(0).sample(sorted(ds.queries), EXAMPLES)
    rest = [q for q in sorted(ds.queries) if q not in chosen]
    if name == "squad":
        rest = random.Random(1).sample(rest, min(SQUAD_QUERIES, len(rest)))
    return tuple(ds.queries[q] for q in chosen), BeirDataset(
        corpus=ds.corpus, queries={q: ds.queries[q] for q in rest}, qrels={q: ds.qrels[q] for q in rest})


def real_scores(coll: Collection, ds, setting: dict) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """``setting`` (``query.*`` overrides) on the real test queries, as served: the top 10 of a
    10-result search (a deeper search would prefetch deeper than ``query.candidates``), R@100 of
    a 300-result one. Means and per-query values."""
    searcher = Searcher(coll)
    searcher.config = coll.pipeline.with_overrides([f"{k}={v}" for k, v in setting.items()]).query
    top = {q: doc_run(searcher.search(text, Principal(), k=10, with_ranks=False, rerank=False), 10)
           for q, text in ds.queries.items()}
    deep = {q: doc_run(searcher.search(text, Principal(), k=300, with_ranks=False, rerank=False), 100)
            for q, text in ds.queries.items()}
    means = score_run(ds.qrels, top, MEASURES[:2]) | score_run(ds.qrels, deep, MEASURES[2:])
    return means, per_query(ds.qrels, top, ["nDCG@10", "Success@5"])


def spearman(xs: list[float], ys: list[float]) -> float:
    """Rank correlation (average ranks for ties)."""
    def ranks(v: list[float]) -> list[float]:
        order = sorted(range(len(v)), key=lambda i: v[i])
        out = [0.0] * len(v)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                out[order[k]] = (i + j) / 2
            i = j + 1
        return out

    rx, ry = ranks(xs), ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    var = (sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry)) ** 0.5
    return cov / var if var else 0.0


def run_corpus(step: Steps, home: Path, name: str, args) -> dict | None:
    from ragtune.models.generator import LocalGenerator

    if name == "squad":  # SQuAD's 40 non-test articles: the design corpus
        coll, source = squad_collection(step, home, "squad", ("train", "dev"))
        ds = load_beir(source, "test")
    else:
        coll, ds = corpus(step, home, name, args)
    folder = coll.dir / "synth" / "tuning"
    chunks = {"scifact": args.chunks, "covidqa": args.covidqa_chunks}.get(name, args.squad_chunks)
    writer = trained_writer("--writer prompted") if args.writer == "trained" else LocalGenerator(home=home)
    step(f"{name}: synthetic queries", lambda: generate_queries(coll, writer, folder, QueryGenConfig(max_chunks=chunks), progress))
    step(f"{name}: filter", lambda: filter_queries(coll, folder, FilterConfig(), progress).to_dict())
    if args.synth_only:
        coll.close()
        return None
    examples, ds = user_examples(name, ds)
    reports = {c: step(f"{name}: tune ({c})", lambda c=c: tune_pipeline(
        coll, folder, on_progress=progress, correction=c, examples=examples if c == "examples" else ()).to_dict())
        for c in CORRECTIONS}

    def measure(setting: dict) -> dict:  # a setting met twice is one step (Steps keeps its result)
        return step(f"{name}: real {json.dumps(setting, sort_keys=True)}",
                    lambda: dict(zip(("means", "per_query"), real_scores(coll, ds, setting))))

    settings = {"base-hybrid": {}, "bm25": {"query.mode": "bm25"}, "dense": {"query.mode": "dense"},
                "tuned-hybrid": reports[DEFAULT]["chosen"]}
    real = {s: measure(v) for s, v in settings.items()}
    corrections = {c: {"chosen": r["chosen"], "delta": r["delta"], "p_value": r["p_value"],
                       "decision_questions": r["decision_questions"], "examples_overlap": r["examples_overlap"],
                       "real": measure(r["chosen"])["means"]} for c, r in reports.items()}
    report = reports[DEFAULT]
    candidates = [{**c, "real": measure(c["setting"])["means"]} for c in report["candidates"]]
    coll.close()

    def vs(base: str, other: str, measure: str) -> dict:
        c = compare_paired(real[base]["per_query"][measure], real[other]["per_query"][measure])
        return {"delta": c.delta, "p_value": c.p_value, "ci": [c.ci_low, c.ci_high]}

    return {
        "queries": len(ds.queries), "writer": writer.name, "synthetic_questions": report["questions"], "splits": report["splits"],
        "decision_questions": report["decision_questions"], "lexical_overlap": report["lexical_overlap"],
        "correction": DEFAULT, "examples": list(examples),
        "chosen": report["chosen"], "fold_choices": report["fold_choices"], "tuner_delta": report["delta"], "tuner_p_value": report["p_value"],
        "scores": {s: r["means"] for s, r in real.items()},
        "tuned_vs_base_hybrid": {m: vs("base-hybrid", "tuned-hybrid", m) for m in ("nDCG@10", "Success@5")},
        "tuned_vs_bm25": {m: vs("bm25", "tuned-hybrid", m) for m in ("nDCG@10", "Success@5")},
        "corrections": corrections,
        "candidates": candidates,
        "spearman_synthetic_vs_real": spearman([c["mrr"] for c in candidates], [c["real"]["nDCG@10"] for c in candidates]),
    }


def section(name: str, r: dict) -> str:
    rows = [[s, *(f"{r['scores'][s][m]:.4f}" for m in MEASURES)] for s in r["scores"]]
    cand = [[json.dumps(c["setting"]), f"{c['mrr']:.3f}", f"{c['delta']:+.3f}", f"{c['p_value']:.3f}",
             f"{c['real']['nDCG@10']:.4f}", f"{c['real']['Success@5']:.3f}"] for c in r["candidates"]]
    t_b, t_m = r["tuned_vs_base_hybrid"], r["tuned_vs_bm25"]
    corr = [[c, v["decision_questions"], json.dumps(v["chosen"]) if v["chosen"] else "(defaults stay)", f"{v['delta']:+.3f}",
             f"{v['p_value']:.4f}", f"{v['real']['nDCG@10']:.4f}", f"{v['real']['Success@5']:.3f}"]
            for c, v in r["corrections"].items()]
    return f"""
## {name} ({r['queries']} real test queries; {r['synthetic_questions']} synthetic {'+'.join(r['splits'])} questions by {r.get('writer', 'SmolLM2-135M-Instruct')})

With the default correction (`{r['correction']}`) the tuner searched on each half of {r['synthetic_questions']} synthetic
questions and tested each half's choice on the other half (lexical overlap of a synthetic question with its chunk:
{r['lexical_overlap']:.2f}). The halves chose {' and '.join(f"`{json.dumps(f)}`" for f in r['fold_choices'])}.
Written: `{json.dumps(r['chosen']) if r['chosen'] else 'nothing (the defaults stay)'}`; cross-fitted synthetic Δ MRR@10
{r['tuner_delta']:+.3f}, p = {r['tuner_p_value']:.4f}.

Each bias correction's choice, and what it scores on the real queries (examples: {len(r['examples'])} unlabelled real queries):

{table(["correction", "chosen on (each half)", "chosen", "synthetic Δ (cross-fitted)", "p", "real nDCG@10", "real hit@5"], corr)}

{table(["system (real test queries)", *MEASURES], rows)}

tuned-hybrid vs base-hybrid: Δ nDCG@10 {t_b['nDCG@10']['delta']:+.4f} (p {t_b['nDCG@10']['p_value']:.4f}), Δ hit@5 {t_b['Success@5']['delta']:+.4f} (p {t_b['Success@5']['p_value']:.4f}).
tuned-hybrid vs bm25: Δ nDCG@10 {t_m['nDCG@10']['delta']:+.4f} (p {t_m['nDCG@10']['p_value']:.4f}), Δ hit@5 {t_m['Success@5']['delta']:+.4f} (p {t_m['Success@5']['p_value']:.4f}).

Every candidate the tuner's search on all questions tried: its synthetic score (in-sample Δ, p) beside the real one.
Spearman rank correlation of synthetic MRR@10 and real nDCG@10 over the candidates: {r['spearman_synthetic_vs_real']:+.2f}.

{table(["setting", "synthetic MRR@10", "synthetic Δ vs current", "p", "real nDCG@10", "real hit@5"], cand)}
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpora", default="squad,covidqa,scifact")
    ap.add_argument("--chunks", type=int, default=400, help="SciFact chunks that get synthetic queries")
    ap.add_argument("--covidqa-chunks", type=int, default=400)
    ap.add_argument("--squad-chunks", type=int, default=400)
    ap.add_argument("--synth-only", action="store_true", help="index and write synthetic questions, then stop")
    ap.add_argument("--docs", type=int, default=0, help="smoke test: a SciFact slice of this many abstracts")
    ap.add_argument("--writer", choices=("prompted", "trained"), default="prompted",
                    help="who writes the synthetic queries: the packaged SmolLM2 as prompted (what `ragtune tune` "
                         "uses out of the box) or benchmarks/qgen_writer.py's trained writer (`ragtune train qgen`)")
    ap.add_argument("--cache", default=None, help="default: tuning-home (prompted writer), tuning-trained-writer")
    ap.add_argument("--report", default=None, help="default: tuning (prompted writer), tuning_trained_writer")
    args = ap.parse_args()
    trained = args.writer == "trained"  # its own cache and report: every step below depends on the writer
    args.cache = args.cache or ("tuning-trained-writer" if trained else "tuning-home")
    args.report = args.report or ("tuning_trained_writer" if trained else "tuning")
    if trained and "squad" in args.corpora.split(","):  # it learned to write from those very articles
        raise SystemExit("--writer trained: leave squad out of --corpora (the trained writer learned from its articles)")
    home = CACHE / args.cache
    home.mkdir(parents=True, exist_ok=True)
    step = Steps(home)
    results = {name: run_corpus(step, home, name, args) for name in args.corpora.split(",")}
    if args.synth_only:
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.report}.json").write_text(json.dumps(
        {name: {"tuned-hybrid": r["scores"]["tuned-hybrid"], "base-hybrid": r["scores"]["base-hybrid"],
                "bm25": r["scores"]["bm25"], "chosen": r["chosen"]} for name, r in results.items()}
        | {"details": results, "steps": {k: v["seconds"] for k, v in step.log.items()}}, indent=2, default=str))
    seconds = table(["step", "seconds"], [[k, v["seconds"]] for k, v in step.log.items()])
    write_report(args.report, "Label-free pipeline tuning vs the truth: synthetic scores beside real judged queries",
                 "".join(section(n, r) for n, r in results.items()) + "\n## Wall-clock per step (seconds)\n\n" + seconds)


if __name__ == "__main__":
    main()
