"""Label-free adaptation that has to win: a self-trained reranker and teacher → embedder
distillation, side by side in one run, on SciFact test and on COVID-QA dev as IR.

Systems (documents ranked by their best chunk; test qrels touch nothing but the final table):
  base-dense, base-hybrid            all-MiniLM-L6-v2 as shipped
  rerank                             base hybrid + the reranker (SQuAD stage 1 → this corpus' synthetic
                                     questions, stage 2), rescoring the top 50 fused chunks
  mnrl-dense                         embedder trained contrastively on the synthetic questions (the old loop)
  distill-ce-dense                   embedder distilled from the reranker (MarginMSE, GPL)
  distill-hybrid-dense               embedder distilled from the hybrid fusion score (listwise KL)
  best-hybrid                        the embedder that wins on the *synthetic dev* questions, hybrid
  best-full                          best-hybrid + the reranker
``--epochs 1,3`` trains each embedder recipe once per epoch count (``mnrl-dense-3ep``, …); all are
candidates for best-*, chosen on synthetic dev. ``--probes N`` also gates the reranker on probes (held-out
documents, other kinds, as `ragtune adapt` writes them) and reports the verdict the product would reach.
The synthetic questions come from benchmarks/qgen_writer.py's trained writer (``--writer trained``, the
default since that writer passed its round-trip target; ``--writer prompted`` is the stock model).
Each against base-hybrid with the paired randomisation test; the gate's own verdicts (reranker on
synthetic dev, each embedder vs live on synthetic dev) are reported beside them; wall-clock per step.

Every step is cached under benchmarks/.cache/<--cache>/ and resumes (question generation chunk by
chunk, teacher scores question by question, the reranker from its checkpoints), so the script can be
stopped and re-run until it completes. ``--corpora covidqa`` alone keeps SciFact untouched.

Run from the repo root:  .venv/bin/python benchmarks/adaptation.py [--corpora scifact,covidqa]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import CACHE, DATA, RESULTS, Steps, progress, table, trained_writer, write_report  # noqa: E402

from ragtune.adapt import compare_versions, rerank_verdict  # noqa: E402
from ragtune.collection import Collection  # noqa: E402
from ragtune.collection.shadow import build_shadow  # noqa: E402
from ragtune.data.beir import BeirDataset, load_beir  # noqa: E402
from ragtune.evaluate.compare import compare_paired  # noqa: E402
from ragtune.evaluate.ir import doc_run, per_query, score_run  # noqa: E402
from ragtune.evaluate.rerank import rerank_gate  # noqa: E402
from ragtune.ingest.sync import ingest  # noqa: E402
from ragtune.retrieve import Searcher  # noqa: E402
from ragtune.synth.filters import FilterConfig, filter_queries  # noqa: E402
from ragtune.synth.negatives import MiningConfig, mine_negatives, training_rows  # noqa: E402
from ragtune.synth.probes import write_probes  # noqa: E402
from ragtune.synth.queries import QueryGenConfig, generate_queries, qg_training_examples  # noqa: E402
from ragtune.synth.teacher import distillation_rows, score_with_teacher  # noqa: E402
from ragtune.train.embedder import EmbedderTrainConfig  # noqa: E402
from ragtune.train.generator import GeneratorTrainConfig  # noqa: E402
from ragtune.train.publish import publish_adapter, publish_embedder  # noqa: E402
from ragtune.train.reranker import RerankerTrainConfig, train_reranker  # noqa: E402
from ragtune.types import Acl, Principal  # noqa: E402

MEASURES = ["nDCG@10", "R@100", "RR@10"]
RERANK_DEPTH = 50
SYSTEMS = ["base-dense", "base-hybrid", "rerank", "mnrl-dense", "distill-ce-dense", "distill-hybrid-dense",
           "best-hybrid", "best-full"]
STAGE1 = CACHE / "reranker" / "stage1" / "model"  # benchmarks/reranker.py's stage 1, when it has finished


def evaluate(step: Steps, coll: Collection, version: str, ds, mode: str, reranker: str | None = None,
             depth: int = RERANK_DEPTH, first_stage_weight: float = 0.0):
    def run_row():
        handle = coll.at_version(version)
        try:
            if reranker:
                handle.pipeline.reranker.model = reranker
                handle.pipeline.reranker.depth = depth
                handle.pipeline.reranker.first_stage_weight = first_stage_weight
            searcher = Searcher(handle)
            run = {q: doc_run(searcher.search(text, Principal(), mode=mode, k=300, with_ranks=False), 100)
                   for q, text in ds.queries.items()}
        finally:
            handle.close()
        return score_run(ds.qrels, run, MEASURES), per_query(ds.qrels, run, ["nDCG@10"])["nDCG@10"]

    blend = f" (first stage {first_stage_weight:g})" if reranker and first_stage_weight else ""
    return step(f"{coll.name}: test {version} {mode}" + (" + rerank" + blend if reranker else ""), run_row)


def corpus(step: Steps, home: Path, name: str, args) -> tuple[Collection, BeirDataset]:
    """The collection (public, indexed once) and the test task of ``name``."""
    if name == "scifact":
        source = DATA / "scifact" if not args.docs else scifact_slice(home, args.docs)
        ds = load_beir(source, "test")
    else:
        from ragtune.config import PipelineConfig
        from ragtune.data.squad import load_squad, squad_to_beir
        from ragtune.ingest.chunking import Chunker

        source = home / "covidqa-beir"
        if not (source / "corpus.jsonl").exists():
            from transformers import AutoTokenizer

            from ragtune.models.loading import resolve_model

            pipeline = PipelineConfig()
            tokenizer = AutoTokenizer.from_pretrained(resolve_model(pipeline.embedder.model))
            squad_to_beir(load_squad(DATA / "covidqa" / "covidqa-dev.json"), source,
                          Chunker.from_tokenizer(pipeline.chunking, tokenizer))
        ds = load_beir(source, "test")
    coll = Collection.create(home, name, exist_ok=True)
    step(f"{name}: index", lambda: ingest(coll, source, Acl(public=True), progress).chunks)
    coll.index_versions.ensure_live_recorded(coll.pipeline.embedder.model)
    return coll, ds


def scifact_slice(home: Path, docs: int) -> Path:
    """A smoke-test slice: the abstracts of the first test claims, padded to ``docs``."""
    from ragtune.data.beir import corpus_record, query_record, read_corpus, write_corpus, write_qrels, write_queries

    out = home / "scifact-slice"
    if (out / "corpus.jsonl").exists():
        return out
    full, test = read_corpus(DATA / "scifact"), load_beir(DATA / "scifact", "test")
    keep: list[str] = []
    for q in sorted(test.qrels):
        keep += [d for d in test.qrels[q] if d in full and d not in keep]
        if len(keep) >= docs // 2:
            break
    keep += [d for d in full if d not in keep][:docs - len(keep)]
    kept = set(keep)
    queries = [q for q in test.qrels if set(test.qrels[q]) <= kept]
    write_corpus(out, [corpus_record(d, full[d]["text"], full[d].get("title", "")) for d in keep])
    write_queries(out, [query_record(q, test.queries[q]) for q in queries])
    write_qrels(out, "test", [(q, d, r) for q in queries for d, r in test.qrels[q].items()])
    return out


def question_writer(step: Steps, home: Path, args):
    """The writer of the synthetic questions: benchmarks/qgen_writer.py's trained writer (``--writer
    trained``, the default), a LoRA trained here on ``--qgen-examples`` SQuAD passages (``own``; the
    recipe this benchmark had before that writer existed), or prompted SmolLM2 (``prompted``)."""
    from ragtune.data.squad import load_squad
    from ragtune.models.generator import LocalGenerator

    if args.writer == "trained":
        return trained_writer("--writer own or --writer prompted")
    own = args.writer == "own" and args.qgen_examples > 0
    if own:
        def train() -> dict:
            examples = qg_training_examples(load_squad(DATA / "squad" / "dev-v1.1.json"), args.qgen_examples)
            meta, r = publish_adapter(home, "qgen", "SmolLM2-135M-Instruct", examples,
                                      GeneratorTrainConfig(epochs=1, max_steps=args.qgen_steps),
                                      task="question generation", data="SQuAD dev", overwrite=True)
            return {"examples": len(examples), "steps": r.steps, "loss": r.train_loss}

        step("train question writer (LoRA, SQuAD)", train)
    return LocalGenerator(home=home, adapter="qgen" if own else None)


def synthetic_set(step: Steps, coll: Collection, generator, chunks: int) -> Path:
    folder = coll.dir / "synth" / "bench"
    step(f"{coll.name}: synthetic questions",
         lambda: generate_queries(coll, generator, folder, QueryGenConfig(max_chunks=chunks), progress))
    step(f"{coll.name}: filter", lambda: filter_queries(coll, folder, FilterConfig(), progress).to_dict())
    step(f"{coll.name}: mine negatives", lambda: mine_negatives(coll, folder, "train", MiningConfig(num_negatives=3), progress))
    return folder


def reranker_for(step: Steps, home: Path, coll: Collection, folder: Path, generator, chunks: int, args) -> dict:
    """Stage 2 on this corpus' synthetic questions, from the SQuAD stage 1 (trained here if the
    reranker benchmark has not left one); gated on synthetic dev and, with ``--probes``, on probes."""
    def stage1() -> str:
        if STAGE1.exists():
            return str(STAGE1)
        if not args.own_stage1:
            # Shared with benchmarks/reranker.py (its held-out SQuAD numbers are this model's):
            # train it there, once, resumable, rather than twice at the same time.
            raise SystemExit(f"no reranker stage 1 at {STAGE1}: run benchmarks/reranker.py first "
                             "(or pass --own-stage1 for a quick smoke run); every finished step here is kept")
        from ragtune.data.squad import load_squad
        from ragtune.train.reranker import squad_relevance_rows

        out = home / "reranker-stage1" / "model"
        train_reranker("all-MiniLM-L6-v2", squad_relevance_rows(load_squad(DATA / "squad" / "dev-v1.1.json")), out,
                       RerankerTrainConfig(max_steps=args.stage1_steps), "cpu", checkpoint_dir=home / "reranker-stage1" / "ckpt",
                       on_progress=progress)
        return str(out)

    base = step("reranker stage 1 (SQuAD)", stage1)

    def stage2() -> str:
        out = home / f"reranker-{coll.name}"
        rows = training_rows(folder, "train", 3, ragged=True)
        train_reranker(base, rows, out, RerankerTrainConfig(epochs=1, max_steps=args.stage2_steps), "cpu",
                       checkpoint_dir=home / f"reranker-{coll.name}-ckpt", on_progress=progress)
        return str(out)

    path = step(f"{coll.name}: reranker stage 2 (synthetic)", stage2)
    gate = step(f"{coll.name}: rerank gate (synthetic dev)",
                lambda: rerank_gate(coll, folder, path, args.rerank_depth, on_progress=progress).to_dict())
    signals = {"synthetic": gate}
    if args.probes > 0:
        # What `ragtune adapt` decides with: probes written for held-out documents, of other kinds
        # than the training questions, decide when there are enough (ragtune.gate); synthetic is heard.
        step(f"{coll.name}: probes ({args.probes})", lambda: write_probes(
            coll, generator, folder, QueryGenConfig(max_chunks=chunks), FilterConfig(), args.probes, progress))
        signals["probes"] = step(f"{coll.name}: rerank gate (probes {args.probes})", lambda: rerank_gate(
            coll, folder / "probes", path, args.rerank_depth, on_progress=progress).to_dict())
    verdict = rerank_verdict(signals)  # the product's own rule, so the report says what it would do
    return {"path": path, "gate": gate, "probes_gate": signals.get("probes"), "verdict": verdict}


def epoch_counts(spec: str) -> list[float]:
    """``--epochs 1,3`` → [1.0, 3.0]: the first count's embedders keep the systems' plain names (the
    keys the issue names); each further count adds the three recipes again, as ``<system>-<n>ep``.
    Every one is a candidate for ``best-*``, which the synthetic dev questions choose.

    >>> epoch_counts("1,3")
    [1.0, 3.0]
    """
    counts = [float(x) for x in spec.split(",") if x.strip()]
    if not counts or min(counts) <= 0 or len(set(counts)) != len(counts):
        raise SystemExit(f"--epochs {spec!r}: give distinct positive epoch counts, comma-separated (e.g. 1,3)")
    return counts


def ordered(systems) -> list[str]:
    """The report's row order: SYSTEMS, each trained embedder followed by its other epoch counts."""
    systems = list(systems)
    return [v for s in SYSTEMS if s in systems for v in [s, *sorted(x for x in systems if x.startswith(f"{s}-"))]]


def embedders(step: Steps, home: Path, coll: Collection, folder: Path, reranker: str, args) -> dict[str, dict]:
    """The three trained embedders, each with its shadow index version and its dev verdict."""
    step(f"{coll.name}: teacher scores (cross-encoder)",
         lambda: score_with_teacher(coll, folder, "cross-encoder", "train", reranker=reranker, on_progress=progress))
    step(f"{coll.name}: teacher scores (hybrid)", lambda: score_with_teacher(coll, folder, "hybrid", "train",
                                                                             on_progress=progress))
    recipes = {}
    for n, epochs in enumerate(epoch_counts(args.epochs)):
        base, tag = EmbedderTrainConfig(epochs=epochs), "" if n == 0 else f"-{epochs:g}ep"
        recipes |= {
            f"mnrl-dense{tag}": (lambda: training_rows(folder, "train", 1), base),
            f"distill-ce-dense{tag}": (lambda: distillation_rows(folder, "cross-encoder", "train", 3),
                                       replace(base, loss="margin-mse")),
            f"distill-hybrid-dense{tag}": (lambda: distillation_rows(folder, "hybrid", "train", 3),
                                           replace(base, loss="kl", kl_teacher_temperature=0.05)),
        }
    out = {}
    for system, (rows_of, config) in recipes.items():
        def train(rows_of=rows_of, config=config, system=system) -> dict:
            rows = rows_of()
            meta, r = publish_embedder(home, coll, rows, config, data=f"{folder} ({system})")
            version = build_shadow(coll, meta["path"], {"model_version": meta["version"], "system": system},
                                   on_progress=progress)
            return {"model": meta["version"], "version": version, "rows": len(rows), "steps": r.steps, "loss": r.train_loss}

        trained = step(f"{coll.name}: train {system} + shadow", train)
        verdict = step(f"{coll.name}: dev gate {system}",
                       lambda v=trained["version"]: compare_versions(coll, folder, v, "dev").to_dict())
        out[system] = {**trained, "dev": verdict}
    return out


def run_corpus(step: Steps, home: Path, name: str, generator, args) -> dict:
    coll, ds = corpus(step, home, name, args)
    chunks = args.chunks if name == "scifact" else args.covidqa_chunks
    folder = synthetic_set(step, coll, generator, chunks)
    rr = reranker_for(step, home, coll, folder, generator, chunks, args)
    rows = {"base-dense": ("v1", "dense", None), "base-hybrid": ("v1", "hybrid", None), "rerank": ("v1", "hybrid", rr["path"])}
    trained: dict[str, dict] = {}
    best = None
    if not args.skip_embedders:
        trained = embedders(step, home, coll, folder, rr["path"], args)
        # "Best" is chosen on the synthetic dev questions, never on test qrels.
        best = max(trained, key=lambda s: trained[s]["dev"]["metrics"][trained[s]["version"]]["nDCG@10"])
        rows |= {**{s: (trained[s]["version"], "dense", None) for s in trained},
                 "best-hybrid": (trained[best]["version"], "hybrid", None),
                 "best-full": (trained[best]["version"], "hybrid", rr["path"])}
    # The rerank stage as the gate would serve it: the first stage's weight chosen on synthetic dev.
    weight = rr["gate"].get("first_stage_weight", 0.0)
    scores, pq = {}, {}
    for system, (version, mode, reranker) in rows.items():
        scores[system], pq[system] = evaluate(step, coll, version, ds, mode, reranker, args.rerank_depth, weight)
    vs = {s: compare_paired(pq["base-hybrid"], pq[s]) for s in rows if s != "base-hybrid"}
    coll.close()
    return {"queries": len(ds.queries), "best": best, "reranker": rr, "embedders": trained, "scores": scores,
            "vs_base_hybrid": {s: {"delta": c.delta, "ci": [c.ci_low, c.ci_high], "p_value": c.p_value} for s, c in vs.items()}}


def probe_line(rr: dict) -> str:
    """The reranker's gate as `ragtune adapt` decides it (probes first), when this run wrote probes."""
    p, v = rr.get("probes_gate"), rr.get("verdict")
    if not p or not v:
        return "No probes written in this run (`--probes N` adds them): the synthetic gate is the only signal."
    return (f"On {p['queries']} probes (held-out documents, other kinds; source chunk): MRR {p['mrr_before']:.3f} → "
            f"{p['mrr_after']:.3f}, p = {p['p_value']:.4f}. The product's verdict (`ragtune adapt`): "
            f"{'switch it on' if v['promote'] else 'keep it off'} — {v['why']}.")


def section(name: str, r: dict) -> str:
    rows = [[s, *(f"{r['scores'][s][m]:.4f}" for m in MEASURES),
             "" if s == "base-hybrid" else f"{r['vs_base_hybrid'][s]['delta']:+.4f}",
             "" if s == "base-hybrid" else f"{r['vs_base_hybrid'][s]['p_value']:.4f}"] for s in ordered(r["scores"])]
    g = r["reranker"]["gate"]
    dev = [[s, e["rows"], e["steps"], f"{e['dev']['delta']:+.4f}", f"{e['dev']['p_value']:.4f}", e["dev"]["promote"]]
           for s, e in r["embedders"].items()]
    return f"""
## {name} ({r['queries']} test queries)

Settings: `{json.dumps(r.get('settings', {}))}`

{table(["system", *MEASURES, "Δ nDCG@10 vs base-hybrid", "p"], rows)}

Best embedder on the synthetic dev questions: `{r['best'] or 'not trained in this run'}`. Rerank gate on synthetic dev (fused top {g['depth']}):
MRR {g['mrr_before']:.3f} → {g['mrr_after']:.3f} (cross-fitted over the first stage's weight), p = {g['p_value']:.4f},
{g['ms_per_query']:.0f} ms/question → enable: {g['enable']}; first-stage weight served: {g.get('first_stage_weight', 0.0):g};
MRR by weight (0 = the reranker's order alone): {json.dumps(g.get('mrr_by_weight', {}))}.
{probe_line(r['reranker'])}

{table(["embedder", "rows", "steps", "dev Δ nDCG@10 vs live", "dev p", "gate would promote"], dev)}
"""


LINKED = "## Query writer, query styles and label-free tuning (from their own benchmarks)"


def linked_results() -> tuple[dict, str]:
    """Issue 18's figures that their own benchmarks measure (qgen_writer.json: the writer before and
    after training; tuning.json: the label-free tuned fusion; query_styles.json: the mixed-kind and
    few-shot sets), under adaptation.json's keys ``writer``, ``tuned-hybrid``, ``types-mix`` and
    ``few-shot``, and their section of adaptation.md."""
    out: dict = {}
    lines = [LINKED, ""]
    writer_path, tuning_path = RESULTS / "qgen_writer.json", RESULTS / "tuning.json"
    if writer_path.exists():
        w = json.loads(writer_path.read_text())
        out["writer"] = {"training_tokens_per_s": w["writer_training"].get("tokens_per_s"),
                         "seconds_per_example": w["writer_training"].get("seconds_per_example"),
                         **{c: {k: {m: r[k][m] for m in ("round_trip_pass_rate", "generic", "usable")}
                                for k in ("prompted", "trained")} for c, r in w["corpora"].items()}}
        lines += ["Question writer, prompted → trained (benchmarks/results/qgen_writer.md; corpora it never trained on):", "",
                  table(["corpus", "round-trip pass", "generic", "usable"],
                        [[c, *(f"{r['prompted'][m]:.2f} → {r['trained'][m]:.2f}" for m in ("round_trip_pass_rate", "generic", "usable"))]
                         for c, r in w["corpora"].items()]), ""]
    if tuning_path.exists():
        t = json.loads(tuning_path.read_text())
        out["tuned-hybrid"] = {c: {"tuned-hybrid": t[c]["tuned-hybrid"], "base-hybrid": t[c]["base-hybrid"], "bm25": t[c]["bm25"],
                                   "chosen": t[c]["chosen"]} for c in t if c not in ("details", "steps")}
        runs = [("", out["tuned-hybrid"])]
        # The same tuner on the trained writer's queries (tuning_trained_writer.json; _1000: from 1000 chunks).
        for trained_path in sorted(RESULTS.glob("tuning_trained_writer*.json")):
            t, size = json.loads(trained_path.read_text()), trained_path.stem.removeprefix("tuning_trained_writer")
            label = f" (trained writer{', ' + size.strip('_') + ' chunks' if size else ''})"
            runs.append((label, {c: t[c] for c in t if c not in ("details", "steps")}))
        # The figure: the loop's own writer (trained) at the largest budget run (tuning_trained_writer_1000
        # sorts after tuning_trained_writer), per corpus, fixed in advance like the query styles' below;
        # every run stays in the table and under "tuned-hybrid-runs".
        out["tuned-hybrid-runs"] = {label.strip(" ()") or "prompted writer": run for label, run in runs}
        for label, run in runs[1:]:
            out["tuned-hybrid"] |= {c: {**v, "run": label.strip(" ()")} for c, v in run.items()}
        lines += ["Label-free tuned fusion on the real test queries (benchmarks/results/tuning.md and, on the trained "
                  "writer's questions, tuning_trained_writer*.md; SQuAD is the design corpus):", "",
                  table(["corpus", "setting written", "nDCG@10 base-hybrid → tuned", "hit@5 base-hybrid → tuned", "hit@5 BM25"],
                        [[c + label, json.dumps(v["chosen"]) if v["chosen"] else "(defaults)",
                          f"{v['base-hybrid']['nDCG@10']:.4f} → {v['tuned-hybrid']['nDCG@10']:.4f}",
                          f"{v['base-hybrid']['Success@5']:.4f} → {v['tuned-hybrid']['Success@5']:.4f}", f"{v['bm25']['Success@5']:.4f}"]
                         for label, run in runs for c, v in run.items()]), ""]
    styles_path = RESULTS / "query_styles.json"
    if styles_path.exists():
        q = json.loads(styles_path.read_text())
        corpora = [c for c in q if c not in ("examples", "settings", "details")]
        for style in ("types-mix", "few-shot"):  # run at several budgets and recipes: the figure is the
            out[style] = {}                         # largest budget of the loop's own recipe (MNRL), fixed in advance
            for c in corpora:
                detail = q["details"][c]["styles"]
                runs = [s for s in q[c] if (s == style or s.startswith(f"{style} (")) and detail[s].get("teacher", "none") == "none"]
                if runs:
                    best = max(runs, key=lambda s: (detail[s].get("chunks", 500), s == style))
                    out[style][c] = {**q[c][best], "set": best, "base-hybrid": q[c]["base-hybrid"]}
        lines += ["Synthetic query styles, each set's embedder searched hybrid, on the real test queries "
                  "(benchmarks/results/query_styles.md):", "",
                  table(["corpus", "set", "nDCG@10 base-hybrid → set", "Δ", "p"],
                        [[c, s, f"{q[c]['base-hybrid']['nDCG@10']:.4f} → {v['nDCG@10']:.4f}", f"{v['delta']:+.4f}",
                          f"{v['p_value']:.4f}"] for c in corpora for s, v in q[c].items() if s != "base-hybrid"]), ""]
    return out, "\n".join(lines) + "\n"


def merge_linked(report: str) -> None:
    """Refresh the linked figures in an existing adaptation.json / .md without re-running anything."""
    figures, text = linked_results()
    path = RESULTS / f"{report}.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **figures}, indent=2, default=str))
    md = RESULTS / f"{report}.md"
    body = md.read_text()
    if LINKED in body:  # replace the section up to the next one
        head, rest = body.split(LINKED, 1)
        body = head + rest[rest.index("\n## "):].lstrip("\n") if "\n## " in rest else head
    wall = body.index("## Wall-clock") if "## Wall-clock" in body else len(body)
    md.write_text(body[:wall] + text + "\n" + body[wall:])
    print(f"wrote {md}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpora", default="scifact,covidqa")
    ap.add_argument("--chunks", type=int, default=1000, help="SciFact chunks that get a synthetic question")
    ap.add_argument("--covidqa-chunks", type=int, default=600)
    ap.add_argument("--writer", choices=("trained", "own", "prompted"), default="trained",
                    help="trained: benchmarks/qgen_writer.py's writer (run that first); own: a LoRA trained here on "
                         "--qgen-examples SQuAD passages; prompted: SmolLM2 as shipped")
    ap.add_argument("--qgen-examples", type=int, default=240, help="with --writer own: SQuAD passages for its writer")
    ap.add_argument("--qgen-steps", type=int, default=30)
    ap.add_argument("--stage1-steps", type=int, default=1500, help="with --own-stage1 only")
    ap.add_argument("--own-stage1", action="store_true", help="train a stage-1 reranker here (smoke runs)")
    ap.add_argument("--stage2-steps", type=int, default=300)
    ap.add_argument("--epochs", default="1", help="embedder epochs; several (1,3) train each recipe once per count")
    ap.add_argument("--probes", type=int, default=0,
                    help="probe chunks for the reranker's gate, as `ragtune adapt` writes them (0: synthetic dev only)")
    ap.add_argument("--rerank-depth", type=int, default=RERANK_DEPTH, help="fused chunks the reranker rescores")
    ap.add_argument("--docs", type=int, default=0, help="smoke test: a SciFact slice of this many abstracts")
    ap.add_argument("--skip-embedders", action="store_true",
                    help="only base-dense, base-hybrid and rerank (use with --report NAME: a report holds one run's rows)")
    ap.add_argument("--cache", default="adapt-home")
    ap.add_argument("--report", default="adaptation")
    ap.add_argument("--merge-only", action="store_true",
                    help="only refresh the writer and tuning figures (from qgen_writer.json, tuning.json)")
    args = ap.parse_args()
    if args.merge_only:
        merge_linked(args.report)
        return
    home = CACHE / args.cache
    home.mkdir(parents=True, exist_ok=True)
    step = Steps(home)
    generator = question_writer(step, home, args)
    results = {name: run_corpus(step, home, name, generator, args) for name in args.corpora.split(",")}
    for r in results.values():
        r["settings"] = {k: v for k, v in vars(args).items() if k not in ("corpora", "cache", "report")}
    RESULTS.mkdir(parents=True, exist_ok=True)
    # A corpus measured in an earlier run (a session holds one corpus' run) keeps its figures.
    path = RESULTS / f"{args.report}.json"
    earlier = json.loads(path.read_text()).get("details", {}) if path.exists() else {}
    results = {**{n: r for n, r in earlier.items() if n not in results}, **results}
    linked, linked_text = linked_results()
    path.write_text(json.dumps(
        {name: {s: {m: r["scores"][s][m] for m in ("nDCG@10", "R@100")} for s in ordered(r["scores"])}
         for name, r in results.items()}
        | linked | {"details": results}, indent=2, default=str))
    seconds = [[k, v["seconds"]] for k, v in step.log.items()]
    body = "".join(section(n, r) for n, r in results.items())
    write_report(args.report, "Label-free adaptation: reranker and distillation vs the base, SciFact and COVID-QA",
                 body + "\n" + linked_text + "\n## Wall-clock per step (seconds, this machine, this run)\n\n" + table(["step", "seconds"], seconds))

if __name__ == "__main__":
    main()
