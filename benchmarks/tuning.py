"""Label-free pipeline tuning (`ragtune tune`) against the truth: every setting the tuner tries,
its score on the collection's held-out *synthetic* questions beside its score on the corpus' real
judged queries, and the tuned pipeline vs the fixed defaults and vs BM25 alone.

Per corpus (SciFact test, COVID-QA as IR): index it (public), write synthetic questions with the
packaged SmolLM2 (`synth queries`, every query kind, round-trip filtered), run the tuner on their
dev split, then score each candidate setting on the real test queries. The tuner never sees a
real query; the real scores are only measured here. Two readings come out of one run:

- `tuned-hybrid` vs `base-hybrid` and vs `bm25` (issue 18: on COVID-QA the label-free tuned
  pipeline should reach BM25 alone, hit@5 >= 0.783);
- how well the synthetic score ranks settings by their real score (Spearman over the candidates),
  a measure of the gate's questions themselves (issue 25).

Every step is cached under benchmarks/.cache/<--cache>/ and the script can be re-run to resume.
COVID-QA's corpus is built exactly as benchmarks/adaptation.py builds it.

Run from the repo root:  .venv/bin/python benchmarks/tuning.py [--corpora covidqa,scifact]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import CACHE, RESULTS, Steps, progress, table, write_report  # noqa: E402
from adaptation import corpus  # noqa: E402

from ragtune.collection import Collection  # noqa: E402
from ragtune.evaluate.compare import compare_paired  # noqa: E402
from ragtune.evaluate.ir import doc_run, per_query, score_run  # noqa: E402
from ragtune.evaluate.tune import tune_pipeline  # noqa: E402
from ragtune.retrieve import Searcher  # noqa: E402
from ragtune.synth.filters import FilterConfig, filter_queries  # noqa: E402
from ragtune.synth.queries import QueryGenConfig, generate_queries  # noqa: E402
from ragtune.types import Principal  # noqa: E402

MEASURES = ["nDCG@10", "Success@5", "R@100"]


def real_scores(coll: Collection, ds, setting: dict) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """``setting`` (``query.*`` overrides) on the real test queries: means and per-query values."""
    searcher = Searcher(coll)
    searcher.config = coll.pipeline.with_overrides([f"{k}={v}" for k, v in setting.items()]).query
    run = {q: doc_run(searcher.search(text, Principal(), k=300, with_ranks=False, rerank=False), 100)
           for q, text in ds.queries.items()}
    return score_run(ds.qrels, run, MEASURES), per_query(ds.qrels, run, ["nDCG@10", "Success@5"])


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


def run_corpus(step: Steps, home: Path, name: str, args) -> dict:
    from ragtune.models.generator import LocalGenerator

    coll, ds = corpus(step, home, name, args)
    folder = coll.dir / "synth" / "tuning"
    chunks = args.chunks if name == "scifact" else args.covidqa_chunks
    step(f"{name}: synthetic queries", lambda: generate_queries(
        coll, LocalGenerator(home=home), folder, QueryGenConfig(max_chunks=chunks), progress))
    step(f"{name}: filter", lambda: filter_queries(coll, folder, FilterConfig(), progress).to_dict())
    report = step(f"{name}: tune (synthetic dev)", lambda: tune_pipeline(coll, folder, on_progress=progress).to_dict())

    def measure(setting: dict) -> dict:
        means, pq = real_scores(coll, ds, setting)
        return {"means": means, "per_query": pq}

    settings = {"base-hybrid": {}, "bm25": {"query.mode": "bm25"}, "dense": {"query.mode": "dense"},
                "tuned-hybrid": report["chosen"]}
    real = {s: step(f"{name}: real {s}", lambda v=v: measure(v)) for s, v in settings.items()}
    candidates = []
    for i, c in enumerate(report["candidates"]):
        r = step(f"{name}: real candidate {i}", lambda s=c["setting"]: measure(s))
        candidates.append({**c, "real": r["means"]})
    coll.close()

    def vs(base: str, other: str, measure: str) -> dict:
        c = compare_paired(real[base]["per_query"][measure], real[other]["per_query"][measure])
        return {"delta": c.delta, "p_value": c.p_value, "ci": [c.ci_low, c.ci_high]}

    return {
        "queries": len(ds.queries), "synthetic_dev_questions": report["questions"],
        "decision_questions": report["decision_questions"], "lexical_overlap": report["lexical_overlap"],
        "chosen": report["chosen"], "tuner_delta": report["delta"], "tuner_p_value": report["p_value"],
        "scores": {s: r["means"] for s, r in real.items()},
        "tuned_vs_base_hybrid": {m: vs("base-hybrid", "tuned-hybrid", m) for m in ("nDCG@10", "Success@5")},
        "tuned_vs_bm25": {m: vs("bm25", "tuned-hybrid", m) for m in ("nDCG@10", "Success@5")},
        "candidates": candidates,
        "spearman_synthetic_vs_real": spearman([c["mrr"] for c in candidates], [c["real"]["nDCG@10"] for c in candidates]),
    }


def section(name: str, r: dict) -> str:
    rows = [[s, *(f"{r['scores'][s][m]:.4f}" for m in MEASURES)] for s in r["scores"]]
    cand = [[json.dumps(c["setting"]), f"{c['mrr']:.3f}", f"{c['delta']:+.3f}", f"{c['p_value']:.3f}",
             f"{c['real']['nDCG@10']:.4f}", f"{c['real']['Success@5']:.3f}"] for c in r["candidates"]]
    t_b, t_m = r["tuned_vs_base_hybrid"], r["tuned_vs_bm25"]
    return f"""
## {name} ({r['queries']} real test queries; {r['synthetic_dev_questions']} synthetic dev questions)

The tuner decided on {r['decision_questions']} keyword-poor synthetic questions and confirmed on as many others
(lexical overlap of a synthetic question with its chunk: {r['lexical_overlap']:.2f}).
Chosen: `{json.dumps(r['chosen']) if r['chosen'] else 'nothing (the defaults stay)'}`; synthetic Δ MRR@10 on the confirmation half
{r['tuner_delta']:+.3f}, p = {r['tuner_p_value']:.4f}.

{table(["system (real test queries)", *MEASURES], rows)}

tuned-hybrid vs base-hybrid: Δ nDCG@10 {t_b['nDCG@10']['delta']:+.4f} (p {t_b['nDCG@10']['p_value']:.4f}), Δ hit@5 {t_b['Success@5']['delta']:+.4f} (p {t_b['Success@5']['p_value']:.4f}).
tuned-hybrid vs bm25: Δ nDCG@10 {t_m['nDCG@10']['delta']:+.4f} (p {t_m['nDCG@10']['p_value']:.4f}), Δ hit@5 {t_m['Success@5']['delta']:+.4f} (p {t_m['Success@5']['p_value']:.4f}).

Every candidate the tuner tried: its synthetic score (decision questions) beside the real one.
Spearman rank correlation of synthetic MRR@10 and real nDCG@10 over the candidates: {r['spearman_synthetic_vs_real']:+.2f}.

{table(["setting", "synthetic MRR@10", "synthetic Δ vs current", "p", "real nDCG@10", "real hit@5"], cand)}
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpora", default="covidqa,scifact")
    ap.add_argument("--chunks", type=int, default=400, help="SciFact chunks that get synthetic queries")
    ap.add_argument("--covidqa-chunks", type=int, default=400)
    ap.add_argument("--docs", type=int, default=0, help="smoke test: a SciFact slice of this many abstracts")
    ap.add_argument("--cache", default="tuning-home")
    ap.add_argument("--report", default="tuning")
    args = ap.parse_args()
    home = CACHE / args.cache
    home.mkdir(parents=True, exist_ok=True)
    step = Steps(home)
    results = {name: run_corpus(step, home, name, args) for name in args.corpora.split(",")}
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
