"""Synthetic query styles, measured on real queries (issue 18): does an embedder trained on a mix
of query kinds, or on queries in the style of 8 example queries, beat the untrained hybrid?

Rows per corpus, each from its own synthetic set written for the same sampled chunks by the same
writer, filtered and trained the same way (MNRL on the kept questions with one mined negative,
`ragtune adapt`'s recipe), and searched hybrid as served; each paired against base-hybrid:
  base-hybrid   all-MiniLM-L6-v2 as shipped
  questions     questions only (the loop before issue 18)
  types-mix     question, claim and keyword query in turn (the default now)
  few-shot      in the style of 8 SciFact *train* queries (``--examples``; SciFact only, never test)
The writer is the one benchmarks/qgen_writer.py trained (``--writer trained``, the default; run that
first) or prompted SmolLM2-135M. Beside each set: its kept share, and how close its queries came to
the examples (words, kind mix; ragtune.synth.style). SciFact is the corpus the few-shot target is
set on; nothing here is chosen on its test queries (the recipe is the loop's default).
Other budgets and recipes are rows of their own, named by what differs (``--chunks 2000``: "few-shot
(2000 chunks)"; ``--own-words``: queries asked for in other words than the passage's, as the gate's
probes are, so that dense training learns what BM25 does not already find; ``--teacher hybrid``: the
same written queries, listwise KL from the hybrid fusion).
Every row that was ever run stays in the report with its writer; nothing is picked by its test score.

Every step is cached under benchmarks/.cache/query-styles/ (RAGTUNE_BENCH_CACHE) and resumes.
Run from the repo root:  .venv/bin/python benchmarks/query_styles.py [--corpora scifact,covidqa]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import CACHE, DATA, RESULTS, WRITER_HOME, Steps, progress, table, trained_writer, write_report  # noqa: E402
from adaptation import corpus, evaluate  # noqa: E402

from ragtune.adapt import compare_versions  # noqa: E402
from ragtune.collection import Collection  # noqa: E402
from ragtune.collection.shadow import build_shadow  # noqa: E402
from ragtune.data import beir  # noqa: E402
from ragtune.evaluate.compare import compare_paired  # noqa: E402
from ragtune.synth.filters import FilterConfig, filter_queries  # noqa: E402
from ragtune.synth.negatives import MiningConfig, mine_negatives, training_rows  # noqa: E402
from ragtune.synth.queries import MAX_EXAMPLES, QueryGenConfig, generate_queries  # noqa: E402
from ragtune.synth.style import style_match  # noqa: E402
from ragtune.synth.teacher import distillation_rows, score_with_teacher  # noqa: E402
from ragtune.train.embedder import EmbedderTrainConfig  # noqa: E402
from ragtune.train.publish import publish_embedder  # noqa: E402

STYLES = ("questions", "types-mix", "few-shot")
DEFAULT_CHUNKS = 500


def scifact_train_examples(count: int = MAX_EXAMPLES, seed: int = 0) -> tuple[str, ...]:
    """``count`` SciFact *train* claims (never a test query): the user's few example queries."""
    train_ids = sorted(beir.read_qrels(DATA / "scifact", "train"))
    texts = {q["_id"]: q["text"] for q in beir.read_queries(DATA / "scifact")}
    return tuple(texts[q] for q in random.Random(seed).sample(train_ids, count))


def writer(kind: str):
    from ragtune.models.generator import LocalGenerator

    return trained_writer("--writer prompted") if kind == "trained" else LocalGenerator()


def writer_id(kind: str, generator) -> str:
    """The writer a row's queries came from: its name and, for the trained one, when it was trained
    (rows written by an older writer stay in the report beside newer ones and must say so)."""
    if kind != "trained":
        return generator.name
    meta = json.loads((WRITER_HOME / "adapters" / "qgen" / "meta.json").read_text())
    return f"{generator.name}, trained {meta['created']}"


def label(style: str, args) -> str:
    """A row's name: the style, plus its budget where it is not the default (500 chunks, 1 epoch,
    MNRL), so a larger run or another recipe of a style is a new row, not a rewrite of the default
    one (:func:`written_as` names the written set that recipes of one budget share)."""
    extra = ([f"{args.chunks} chunks"] if args.chunks != DEFAULT_CHUNKS else []) + \
            (["own words"] if args.own_words else []) + \
            ([f"{args.epochs:g} epochs"] if args.epochs != 1.0 else []) + \
            ([f"{args.teacher} teacher"] if args.teacher != "none" else [])
    return f"{style} ({', '.join(extra)})" if extra else style


def written_as(row: str) -> str:
    """The written set a row trained on: its name less the recipe's extras (epochs, teacher).

    >>> written_as("few-shot (2000 chunks, own words, hybrid teacher)"), written_as("questions (2 epochs)")
    ('few-shot (2000 chunks, own words)', 'questions')
    """
    style, _, extra = row.partition(" (")
    kept = [x for x in extra.rstrip(")").split(", ") if x.endswith("chunks") or x == "own words"]
    return f"{style} ({', '.join(kept)})" if kept else style


def slug(name: str) -> str:
    return name.replace(" (", "-").replace(", ", "-").replace(" ", "").rstrip(")")


def training_set(step: Steps, coll: Collection, written: Path, name: str, teacher: str) -> tuple[Path, list[dict]]:
    """The rows a recipe trains on, from the kept queries in ``written``: MNRL's (query, chunk, one
    mined negative) there; a teacher's (query, chunk, 3 mined negatives, the teacher's 4 scores;
    listwise KL, what gate.py's kl-hybrid candidate uses) in a copy of the folder, so both recipes
    train on the very same queries."""
    if teacher == "none":
        step(f"{coll.name}: {name}: mine negatives",
             lambda: mine_negatives(coll, written, "train", MiningConfig(num_negatives=1), progress))
        return written, training_rows(written, "train", 1)
    folder = written.with_name(f"{written.name}-{teacher}")
    if not (folder / "qrels").exists():
        shutil.copytree(written, folder, ignore=shutil.ignore_patterns("negatives.*"))
    step(f"{coll.name}: {name}: mine negatives",
         lambda: mine_negatives(coll, folder, "train", MiningConfig(num_negatives=3), progress))
    step(f"{coll.name}: {name}: teacher scores",
         lambda: score_with_teacher(coll, folder, teacher, "train", on_progress=progress))
    return folder, distillation_rows(folder, teacher, "train", 3)


def style_config(style: str, chunks: int, examples: tuple[str, ...], own_words: bool = False) -> QueryGenConfig:
    if style == "questions":
        return QueryGenConfig(max_chunks=chunks, types=("question",), own_words=own_words)
    if style == "few-shot":
        return QueryGenConfig(max_chunks=chunks, examples=examples, own_words=own_words)
    return QueryGenConfig(max_chunks=chunks, own_words=own_words)  # the default mix


def one_style(step: Steps, home: Path, coll: Collection, ds, generator, style: str, args,
              examples: tuple[str, ...]) -> dict:
    name = label(style, args)
    written_name = written_as(name)
    folder = coll.dir / "synth" / slug(written_name)
    config = style_config(style, args.chunks, examples, args.own_words)
    step(f"{coll.name}: {written_name}: write", lambda: generate_queries(coll, generator, folder, config, progress))
    report = step(f"{coll.name}: {written_name}: filter", lambda: filter_queries(coll, folder, FilterConfig(), progress).to_dict())
    recipe = EmbedderTrainConfig(epochs=args.epochs) if args.teacher == "none" else \
        EmbedderTrainConfig(epochs=args.epochs, loss="kl", kl_teacher_temperature=0.05)

    train_folder, rows = training_set(step, coll, folder, name, args.teacher)

    def train() -> dict:
        meta, r = publish_embedder(home, coll, rows, recipe, data=f"{train_folder} ({name})")
        version = build_shadow(coll, meta["path"], {"model_version": meta["version"], "style": style}, on_progress=progress)
        return {"version": version, "rows": len(rows), "steps": r.steps, "loss": r.train_loss,
                "writer": writer_id(args.writer, generator), "chunks": args.chunks, "epochs": args.epochs,
                "teacher": args.teacher}

    trained = step(f"{coll.name}: {name}: train + shadow", train)
    gate = step(f"{coll.name}: {name}: synthetic dev", lambda: compare_versions(coll, folder, trained["version"], "dev").to_dict())
    kept = {q for split in ("train", "dev") for q in beir.read_qrels(folder, split)}
    written = beir.read_queries(folder)
    style_of = style_match([q["text"] for q in written if q["_id"] in kept], examples)
    scores, per_query = evaluate(step, coll, trained["version"], ds, "hybrid")
    return {**trained, "filter": {k: report[k] for k in ("candidates", "kept", "train", "dev")},
            "gate_delta": gate["delta"], "gate_p": gate["p_value"], "style": style_of,
            "first_queries": [q["text"] for q in written[:6]], "scores": scores, "per_query": per_query}


def run_corpus(step: Steps, home: Path, name: str, generator, args, examples: tuple[str, ...]) -> dict:
    coll, ds = corpus(step, home, name, argparse.Namespace(docs=args.docs))
    base_scores, base_pq = evaluate(step, coll, "v1", ds, "hybrid")
    styles = [s for s in args.styles.split(",") if s != "few-shot" or name == "scifact"]  # example queries: SciFact train
    rows = {label(s, args): one_style(step, home, coll, ds, generator, s, args, examples) for s in styles}
    coll.close()
    out: dict = {"queries": len(ds.queries), "base-hybrid": base_scores, "styles": {}}
    for s, r in rows.items():
        c = compare_paired(base_pq, r.pop("per_query"))
        out["styles"][s] = {**r, "delta": c.delta, "ci": [c.ci_low, c.ci_high], "p_value": c.p_value}
    return out


def section(name: str, r: dict, examples: tuple[str, ...]) -> str:
    b = r["base-hybrid"]
    rows = [["base-hybrid", "", "", "", "", f"{b['nDCG@10']:.4f}", f"{b['R@100']:.4f}", "", "", ""]]
    for s, v in r["styles"].items():
        f = v["filter"]
        rows.append([s, v.get("writer", "not recorded"), f"{f['kept']}/{f['candidates']}", v["rows"], v["steps"], f"{v['scores']['nDCG@10']:.4f}",
                     f"{v['scores']['R@100']:.4f}", f"{v['delta']:+.4f} [{v['ci'][0]:+.4f}, {v['ci'][1]:+.4f}]",
                     f"{v['p_value']:.4f}", f"{v['gate_delta']:+.4f} (p {v['gate_p']:.3f})"])
    style_rows = [[s, f"{v['style']['written']['words_mean']:.1f}", json.dumps(v["style"]["written"]["kinds"]),
                   f"{v['style']['kind_overlap']:.2f}", f"{v['style']['length_ratio']:.2f}"] for s, v in r["styles"].items()]
    e = r["styles"].get("few-shot", {}).get("style", {}).get("examples") or {}
    firsts = "\n".join(f"- {s}: " + " | ".join(v["first_queries"][:4]) for s, v in r["styles"].items())
    return f"""
## {name} ({r['queries']} real queries; nDCG@10 and R@100, hybrid as served)

{table(["system", "writer", "kept / written", "training rows", "steps", "nDCG@10", "R@100", "Δ nDCG@10 vs base-hybrid [95% CI]", "p", "gate's synthetic dev Δ"], rows)}

{f"How close each set came to the example queries (kept queries; examples: {e['words_mean']:.1f} words, {json.dumps(e['kinds'])}):"
   if e else "The kept queries' length and kinds (no example queries on this corpus: the columns against them do not apply):"}

{table(["set", "words (mean)", "kinds", "kinds in common with the examples", "length ratio"], style_rows)}

First queries written:

{firsts}
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpora", default="scifact")
    ap.add_argument("--styles", default=",".join(STYLES))
    ap.add_argument("--chunks", type=int, default=500, help="chunks each set writes one query for (the same sample)")
    ap.add_argument("--epochs", type=float, default=1.0, help="the loop's default")
    ap.add_argument("--writer", choices=("trained", "prompted"), default="trained")
    ap.add_argument("--teacher", choices=("none", "hybrid"), default="none",
                    help="none: MNRL (the loop's default); hybrid: listwise KL from the hybrid fusion's scores")
    ap.add_argument("--own-words", action="store_true",
                    help="ask the writer for the passage's content in other words (as the gate's probes are): "
                         "queries that share fewer words with their chunk, so dense training learns more than BM25 knows")
    ap.add_argument("--docs", type=int, default=0, help="smoke run: a SciFact slice of this many abstracts")
    args = ap.parse_args()
    home = CACHE / "query-styles"
    home.mkdir(parents=True, exist_ok=True)
    step = Steps(home)
    examples = scifact_train_examples()
    generator = writer(args.writer)
    results = {name: run_corpus(step, home, name, generator, args, examples) for name in args.corpora.split(",")}
    path = RESULTS / "query_styles.json"
    earlier = json.loads(path.read_text()).get("details", {}) if path.exists() else {}
    for n, r in results.items():  # rows run earlier (another corpus, style or budget) stay, newest first
        r["styles"] = {**r["styles"], **{s: v for s, v in earlier.get(n, {}).get("styles", {}).items() if s not in r["styles"]}}
    results = {**{n: r for n, r in earlier.items() if n not in results}, **results}
    figures = {n: {"base-hybrid": {m: r["base-hybrid"][m] for m in ("nDCG@10", "R@100")},
                   **{s: {"nDCG@10": v["scores"]["nDCG@10"], "R@100": v["scores"]["R@100"], "delta": v["delta"],
                          "p_value": v["p_value"]} for s, v in r["styles"].items()}} for n, r in results.items()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**figures, "examples": list(examples), "settings": vars(args), "details": results},
                               indent=2, default=str))
    seconds = table(["step", "seconds"], [[k, f"{v:.0f}"] for k, v in step.seconds().items()])
    example_list = "\n".join(f"- {q}" for q in examples)
    write_report("query_styles", "Synthetic query styles on real queries: questions, a mix of kinds, few-shot", f"""
Settings: `{json.dumps(vars(args))}`. Writer: {args.writer}. Recipe for every set: MNRL, {args.epochs:g} epoch(s),
one mined negative, the filter's defaults; paired randomisation test over the real queries.

The 8 example queries (SciFact train, drawn with seed 0):

{example_list}
{"".join(section(n, r, examples) for n, r in results.items())}
## Seconds per step

{seconds}
""")


if __name__ == "__main__":
    main()
