"""The question writer before and after training, on corpora it never saw (issue 18): the share of
its queries that are well formed, that are generic ("What does the passage conclude?"), and that
pass the round trip (their own chunk comes back in the top 10 of BM25 or dense), prompted
SmolLM2-135M vs the LoRA writer trained on SQuAD.

The writer trains on the paragraphs of SQuAD's 36 train articles (questions, claims and keyword
queries in turn, `ragtune train qgen`'s data), its held-out loss tracked on the 4 dev articles,
checkpointed so that a stopped run resumes. It is then judged on chunks of two corpora it never
trained on: COVID-QA (another domain) and SQuAD's 8 test articles. Both writers write one query
for the same chunks, so the pass rates are paired (randomisation test over chunks).

Run from the repo root:  .venv/bin/python benchmarks/qgen_writer.py [--chunks 150]
Every step is cached in benchmarks/.cache/qgen-writer/ (RAGTUNE_BENCH_CACHE): re-run to resume.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import WRITER_HOME, DATA, RESULTS, Steps, progress, split_squad_articles, squad_collection, table, write_report  # noqa: E402
from adaptation import corpus  # noqa: E402

from ragtune.collection import Collection  # noqa: E402
from ragtune.data import beir  # noqa: E402
from ragtune.data.squad import load_squad  # noqa: E402
from ragtune.evaluate.compare import compare_paired  # noqa: E402
from ragtune.synth.filters import FilterConfig, filter_queries  # noqa: E402
from ragtune.synth.queries import DEFAULT_TYPES, QueryGenConfig, generate_queries, qg_training_examples  # noqa: E402

BASE = "SmolLM2-135M-Instruct"
WRITERS = ("prompted", "trained")


def train_writer(home: Path, args) -> dict:
    from transformers import AutoTokenizer

    from ragtune.models.generator import base_model_path
    from ragtune.train.generator import GeneratorTrainConfig
    from ragtune.train.publish import publish_adapter

    split = split_squad_articles(load_squad(DATA / "squad" / "dev-v1.1.json"))
    train = qg_training_examples(split["train"], None, types=DEFAULT_TYPES)
    held = qg_training_examples(split["dev"], args.eval_examples, types=DEFAULT_TYPES)
    options = {"top_layers": args.top_layers} if args.top_layers else {}
    config = GeneratorTrainConfig(epochs=args.epochs, max_steps=args.max_steps, batch_size=8, options=options, eval_every=args.eval_every,
                                  checkpoint_every=args.eval_every or 25)
    meta, r = publish_adapter(home, "qgen", BASE, train, config, task="question generation",
                              data="SQuAD dev, 36 train articles", overwrite=True, eval_rows=held,
                              checkpoint_dir=home / "qgen-checkpoints", examples=len(train))
    tokenizer = AutoTokenizer.from_pretrained(base_model_path(BASE, home))
    tokens = sum(len(tokenizer(tokenizer.apply_chat_template(ex["prompt"] + ex["completion"], tokenize=False),
                               add_special_tokens=False)["input_ids"]) for ex in train)
    # a resumed run times only its own part (the steps after its checkpoint): its speed is that part's
    resumed = r.metrics.get("resumed_from")
    timed = r.steps - (int(str(resumed).rsplit("-", 1)[1]) if resumed else 0)
    return {"examples": len(train), "held_out_examples": len(held), "steps": r.steps, "train_loss": r.train_loss,
            "seconds": r.seconds, "timed_steps": timed, "seconds_per_example": r.seconds / max(1, timed * 8),
            "tokens_per_s": timed * 8 / len(train) * tokens / r.seconds,
            "eval_loss_before": r.metrics["eval_loss_before"],
            "eval_loss_after": r.metrics["eval_loss_after"], "curve": r.metrics.get("curve", []),
            "resumed_from": r.metrics.get("resumed_from"), "options": options}


def judge(coll: Collection, home: Path, writer: str, chunks: int) -> dict:
    """One query per chunk by ``writer`` on the same ``chunks`` sampled chunks, filtered as
    `ragtune synth filter` filters; each chunk's outcome (kept or why not) for the paired test."""
    from ragtune.models.generator import LocalGenerator

    generator = LocalGenerator(home=home, adapter="qgen" if writer == "trained" else None)
    folder = coll.dir / "synth" / f"writer-{writer}"
    generate_queries(coll, generator, folder, QueryGenConfig(max_chunks=chunks, seed=0), progress)
    report = filter_queries(coll, folder, FilterConfig(), progress)
    kept = {q for split in ("train", "dev") for q in beir.read_qrels(folder, split)}
    queries = beir.read_queries(folder)
    return {"report": report.to_dict(),
            "outcome": {q["metadata"]["chunk_id"]: int(q["_id"] in kept) for q in queries},
            "types": {q["metadata"]["chunk_id"]: q["metadata"].get("type", "question") for q in queries},
            "examples": [q["text"] for q in queries[:9]]}


def rates(report: dict) -> dict:
    written = report["candidates"]
    formed = written - report["removed"]["malformed"] - report["removed"]["duplicate"]
    return {"written": written, "well_formed": formed / written,
            "generic": report["malformed_reasons"].get("generic", 0) / written,
            "round_trip_pass_rate": report["kept"] / formed if formed else 0.0, "usable": report["kept"] / written}


def usable_by_kind(outcome: dict[str, int], types: dict[str, str], kind: str) -> float:
    chunks = [c for c in outcome if types.get(c) == kind]
    return sum(outcome[c] for c in chunks) / len(chunks) if chunks else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=150, help="chunks per corpus each writer writes a query for")
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--max-steps", type=int, default=-1, help="> 0: stop there (a smoke run)")
    ap.add_argument("--top-layers", type=int, default=0, help="LoRA on the top N layers only (0: all)")
    ap.add_argument("--eval-every", type=int, default=25, help="steps between held-out loss measurements")
    ap.add_argument("--eval-examples", type=int, default=120, help="held-out paragraphs (SQuAD dev articles)")
    ap.add_argument("--corpora", default="covidqa,squad-test")
    args = ap.parse_args()

    home = WRITER_HOME
    home.mkdir(parents=True, exist_ok=True)
    step = Steps(home)
    trained = step(f"train the writer (SQuAD train articles, {args.epochs:g} epoch, top layers {args.top_layers})",
                   lambda: train_writer(home, args))
    results: dict[str, dict] = {}
    for name in args.corpora.split(","):
        coll = corpus(step, home, name, argparse.Namespace(docs=0))[0] if name == "covidqa" else squad_collection(step, home, "squad-test", ("test",))[0]
        results[name] = {w: step(f"{name}: {w} writer, {args.chunks} chunks", lambda w=w: judge(coll, home, w, args.chunks))
                         for w in WRITERS}
        coll.close()
    write(args, trained, results, step)


def write(args, trained: dict, results: dict, step: Steps) -> None:
    out: dict = {"writer_training": {k: v for k, v in trained.items() if k != "curve"}, "corpora": {}}
    sections = []
    for name, by_writer in results.items():
        r = {w: rates(by_writer[w]["report"]) for w in WRITERS}
        before, after = (by_writer[w]["outcome"] for w in WRITERS)
        common = sorted(set(before) & set(after))
        c = compare_paired({k: before[k] for k in common}, {k: after[k] for k in common})
        kinds = sorted(set(by_writer["trained"]["types"].values()))
        by_kind = [[k] + [f"{usable_by_kind(o, by_writer[w]['types'], k):.2f}"
                          for w, o in (("prompted", before), ("trained", after))] for k in kinds]
        out["corpora"][name] = {w: {**r[w], "reasons": by_writer[w]["report"]["malformed_reasons"]} for w in WRITERS}
        out["corpora"][name]["paired"] = {"chunks": len(common), "delta_usable": c.delta, "p": c.p_value}
        rows = [[w, r[w]["written"], f"{r[w]['well_formed']:.2f}", f"{r[w]['generic']:.2f}",
                 f"{r[w]['round_trip_pass_rate']:.2f}", f"{r[w]['usable']:.2f}",
                 json.dumps(by_writer[w]["report"]["malformed_reasons"])] for w in WRITERS]
        samples = "\n".join(f"- prompted: {a}\n  trained: {b}" for a, b in zip(by_writer["prompted"]["examples"][:6],
                                                                                by_writer["trained"]["examples"][:6]))
        sections.append(f"""## {name} ({len(common)} chunks, one query each, kinds in turn)

{table(["writer", "written", "well formed", "generic", "round-trip pass (of well formed)", "usable (kept of written)", "malformed, why"], rows)}

Paired over chunks (kept = 1): usable Δ {c.delta:+.3f}, p = {c.p_value:.4f}.

{table(["kind", "usable, prompted", "usable, trained"], by_kind)}

The first queries each wrote (same chunks):

{samples}
""")
    t = trained
    curve = ", ".join(f"{p['step']}: {p['eval_loss']:.3f}" for p in t.get("curve", []))
    out["writer_training"]["curve"] = t.get("curve", [])
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "qgen_writer.json").write_text(json.dumps(out, indent=2))
    seconds = table(["step", "seconds"], [[k, f"{v:.0f}"] for k, v in step.seconds().items()])
    write_report("qgen_writer", "The question writer before and after training, on corpora it never saw", f"""
Settings: `{json.dumps(vars(args))}`.

Writer training: {t['examples']} SQuAD paragraphs (36 train articles), {t['steps']} steps of 8; {t['seconds']:.0f} s for
{"the last " + str(t['timed_steps']) + " (this run's part) " if t.get('timed_steps', t['steps']) != t['steps'] else ""}with their held-out measurements ({t['seconds_per_example']:.2f} s per example, {t['tokens_per_s'] or float('nan'):.0f} tokens/s), LoRA options {json.dumps(t['options']) or 'default'}; held-out loss on
{t['held_out_examples']} paragraphs of 4 other articles {t['eval_loss_before']:.3f} → {t['eval_loss_after']:.3f}
(curve, step: loss — {curve}){f"; resumed from {t['resumed_from']}" if t.get('resumed_from') else ''}.

{"".join(sections)}
## Seconds per step

{seconds}
""")


if __name__ == "__main__":
    main()
