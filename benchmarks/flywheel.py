"""A simulated deployment on COVID-QA: users ask through the real server, rate the answers from
the gold, the flywheel retrains, and held-out questions say whether it got better.

1. The 60 COVID-QA dev articles are indexed (default pipeline: hybrid retrieval, the extractive
   sentence baseline answering). The articles are split in two, seeded: the questions of
   --train-articles of them are what the simulated users ask; the questions of the rest are the
   held-out set, never asked by a user, never trained on.
2. Round r (1..--rounds): a real `ragtune serve` process; the user asks the next --per-round
   training questions (POST /v1/collections/covidqa/ask) and gives feedback from the gold answer:
   F1 ≥ 0.5 → thumbs up; else thumbs down with the gold answer as a correction (which the export
   turns into a preference pair and, when verbatim in a passage, a QA row). --noise of the ratings
   are deliberately wrong: an up becomes a down corrected with another question's answer, a down
   becomes an up. The server stops; `ragtune flywheel -c covidqa` runs (the real CLI, feedback
   only: no synthetic questions, for the CPU budget); the server restarts on what it promoted.
3. After every round (and before the first: round 0) the held-out questions are asked through
   the server: retrieval nDCG@10 (POST .../search, the chunks holding the gold span are relevant)
   on every held-out question, answer F1 (POST .../ask) on a seeded sample; paired randomisation
   tests against round 0 and against the round before.
4. At the end: `ragtune train preferences` (DPO, LoRA) on the exported preference pairs, held-out
   preference accuracy (the newest pairs) before/after, for each --dpo-sft-weights variant (plain
   DPO, and DPO plus a language-modelling loss on the chosen answers) side by side; with --dpo-select, RPO's
   learning rate and epochs chosen on the training pairs alone; with --dpo-confirm, the selected adapter
   re-judged on fresh pairs (held-out questions rated in a copy of the deployment, `ragtune eval preferences`).

Run from the repo root:  .venv/bin/python benchmarks/flywheel.py [--rounds 3 --per-round 180]
Resumable: each finished step is kept in <cache>/$FLYWHEEL_HOME (default flywheel-home)/steps.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import CACHE, DATA, RESULTS, Steps, git_commit, split_squad_articles, table, write_report  # noqa: E402

HOME = CACHE / os.environ.get("FLYWHEEL_HOME", "flywheel-home")
NAME = "covidqa"
SELECTED = "RPO, selected on training pairs"  # the label of the DPO row whose settings the selection chose


def split_articles(examples: list, train_articles: int, seed: int) -> tuple[list, list]:
    articles = sorted({ex.article_id for ex in examples})
    random.Random(seed).shuffle(articles)
    train = set(articles[:train_articles])
    return [ex for ex in examples if ex.article_id in train], [ex for ex in examples if ex.article_id not in train]


def held_out_qrels(examples: list) -> dict[str, dict[str, int]]:
    """The chunks that hold each question's gold span (as ``ragtune.data.spans.holds_answer``)."""
    from ragtune.collection import Collection
    from ragtune.data.spans import context_doc_id

    with Collection.open(HOME, NAME) as coll:
        chunks = coll.store.scroll_payloads(["chunk_id", "doc_id", "start", "end"])
    by_doc: dict[str, list[dict]] = {}
    for c in chunks:
        by_doc.setdefault(c["doc_id"], []).append(c)
    qrels = {}
    for ex in examples:
        rel = {}
        for c in by_doc.get(context_doc_id(ex), []):
            for text, start in zip(ex.answers, ex.answer_starts):
                overlap = min(start + len(text), c["end"]) - max(start, c["start"])
                if overlap >= len(text) or (len(text) and overlap >= len(text) / 2):
                    rel[c["chunk_id"]] = 1
        if rel:
            qrels[ex.id] = rel
    return qrels


class Server:
    """A real `ragtune serve` process on a free loopback port."""

    def __init__(self, home: Path = HOME):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.home = home

    def __enter__(self):
        import httpx2 as httpx

        log = open(self.home / "server.log", "a")
        self.proc = subprocess.Popen([sys.executable, "-m", "ragtune", "serve", "--port", str(self.port)],
                                     env={**os.environ, "RAGTUNE_HOME": str(self.home)}, stdout=log, stderr=log)
        for _ in range(900):
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.2)
        raise RuntimeError(f"server did not start; see {self.home / 'server.log'}")

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(timeout=120)


def client(url: str, key: str):
    import httpx2 as httpx

    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=600)


def measure(url: str, key: str, held: list, qrels: dict, answer_sample: list) -> dict:
    """Held-out quality through the server: nDCG@10 per question, answer F1 per sampled question."""
    from ragtune.evaluate.ir import per_query
    from ragtune.evaluate.qa import f1

    with client(url, key) as c:
        run = {}
        for ex in held:
            if ex.id not in qrels:
                continue
            r = c.post(f"/v1/collections/{NAME}/search", json={"query": ex.question, "k": 10})
            r.raise_for_status()
            run[ex.id] = {h["chunk_id"]: -float(i) for i, h in enumerate(r.json()["hits"])}
        ndcg = per_query(qrels, run, ["nDCG@10"])["nDCG@10"]
        answers = {}
        for n, ex in enumerate(answer_sample, start=1):
            r = c.post(f"/v1/collections/{NAME}/ask", json={"question": ex.question})
            r.raise_for_status()
            answers[ex.id] = f1(r.json()["text"], ex.answers)
            print(f"\rheld-out answers {n}/{len(answer_sample)}", end="", flush=True)
    print()
    return {"nDCG@10": ndcg, "F1": answers}


def simulate_user(url: str, key: str, batch: list, others: list, noise: float, seed: int,
                  answer_ids: list[str] | None = None) -> dict:
    """Ask each question, rate the answer from the gold (with ``noise`` of the ratings wrong);
    ``answer_ids`` collects the ids of the answers rated."""
    from ragtune.evaluate.qa import f1

    rng = random.Random(seed)
    counts = {"asked": 0, "up": 0, "down": 0, "noisy": 0, "right": 0}
    with client(url, key) as c:
        for n, ex in enumerate(batch, start=1):
            r = c.post(f"/v1/collections/{NAME}/ask", json={"question": ex.question})
            r.raise_for_status()
            answer = r.json()
            right = f1(answer["text"], ex.answers) >= 0.5
            noisy = rng.random() < noise
            up = right != noisy
            body: dict = {"answer_id": answer["id"], "rating": "up" if up else "down"}
            if not up:  # a user who knows better says what the answer is (a noisy one says something else)
                body["correction"] = rng.choice(others).answers[0] if noisy else ex.answers[0]
            c.post("/v1/feedback", json=body).raise_for_status()
            if answer_ids is not None:
                answer_ids.append(answer["id"])
            counts["asked"] += 1
            counts["up" if up else "down"] += 1
            counts["noisy"] += noisy
            counts["right"] += right
            print(f"\rasked {n}/{len(batch)}", end="", flush=True)
    print()
    return counts


def reader_stage1(args) -> str | None:
    """A SQuAD-trained span reader for the reader task to start from (the reranker's stage 1, for
    reading): a MiniLM encoder trained on ~150 feedback rows alone never learns to read (F1 0.31 →
    0.03 on the newer rows in an earlier run). Same recipe as benchmarks/answers.py's reader-squad;
    its own steps file, so it can run beside the rounds."""
    if args.reader_stage1:
        return args.reader_stage1
    if not args.reader_stage1_steps:
        return None
    from answers import reader_squad

    from ragtune.data.squad import load_squad

    squad = split_squad_articles(load_squad(DATA / "squad" / "dev-v1.1.json"))
    home = HOME / "reader-stage1"
    home.mkdir(parents=True, exist_ok=True)
    recipe = argparse.Namespace(epochs=2.0, steps=args.reader_stage1_steps, max_length=256, lr=1e-4, eval_every=300,
                                dev_questions=300)
    return reader_squad(Steps(home), home, squad, recipe)


def flywheel(args, round_: int, reader_base: str | None) -> dict:
    tasks = [t for t in args.tasks.split(",") if t != "reader" or round_ <= args.reader_rounds]
    cmd = [sys.executable, "-m", "ragtune", "flywheel", "-c", NAME, "--no-synthetic", "--min-interval-minutes", "0",
           "--min-new-feedback", str(args.per_round // 2), "--min-feedback-queries", str(args.min_feedback_queries),
           "--test-fraction", str(args.test_fraction), "--epochs", str(args.epochs), "--batch-size", "16", "--json",
           *(a for t in tasks for a in ("--task", t)),
           *(("--reader-base", reader_base) if reader_base and "reader" in tasks else ())]
    out = subprocess.run(cmd, env={**os.environ, "RAGTUNE_HOME": str(HOME)}, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"ragtune flywheel failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout)


def export_pairs(test_fraction: float) -> tuple[dict, Path]:
    from ragtune.feedback import FeedbackStore

    folder = HOME / "export-final"
    store = FeedbackStore(HOME)
    counts = store.export(folder, test_fraction, NAME)
    store.close()
    return counts, folder / "preferences.jsonl"


def train_pref(name: str, data: Path, max_length: int, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "ragtune", "train", "preferences", "-c", NAME, "--data", str(data), "--name", name,
           "--objective", "dpo", "--max-length", str(max_length), "--overwrite", "--json", *extra]
    out = subprocess.run(cmd, env={**os.environ, "RAGTUNE_HOME": str(HOME)}, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"ragtune train preferences failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout)


def dpo(args, sft_weight: float, lr: float | None = None, epochs: float | None = None) -> dict:
    """DPO on the older exported pairs, gated on the newest 20% (the CLI's own split)."""
    counts, data = export_pairs(args.test_fraction)
    extra = ["--epochs", str(epochs or args.dpo_epochs), "--sft-weight", str(sft_weight),
             *(("--learning-rate", str(lr)) if lr else ())]
    name = "flywheel-dpo" + ("-sft" if sft_weight else "") + ("-selected" if lr else "")
    return {"export": counts, "result": train_pref(name, data, args.dpo_max_length, extra)}


def dpo_candidate(args, lr: float, epochs: float) -> dict:
    """One learning rate / epochs candidate, trained on the older 80% of the *training* pairs and
    scored on the newer 20% of them: the held-out pairs the gate uses are never looked at."""
    from ragtune.data.beir import iter_jsonl
    from ragtune.train.preference import split_by_time

    _, data = export_pairs(args.test_fraction)
    train, _held = split_by_time(list(iter_jsonl(data)), 0.2)  # the split `ragtune train preferences` makes
    fit, val = split_by_time(train, 0.2)
    folder = HOME / "dpo-select"
    folder.mkdir(exist_ok=True)
    for part, rows in (("train", fit), ("val", val)):
        (folder / f"{part}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = train_pref("flywheel-dpo-candidate", folder / "train.jsonl", args.dpo_max_length,
                     ["--eval-data", str(folder / "val.jsonl"), "--learning-rate", str(lr), "--epochs", str(epochs),
                      "--sft-weight", "1"])
    return {"lr": lr, "epochs": epochs, "train_pairs": len(fit), "val_pairs": len(val),
            "val_before": res["before"]["accuracy"], "val_after": res["after"]["accuracy"],
            "val_margin_after": res["after"]["margin"], "steps": res["steps"], "train_seconds": res["train_seconds"]}


def confirm_dpo(args, adapter: str, held: list, answer_sample: list, key: dict) -> dict:
    """The selected preference adapter re-judged on pairs no setting has seen. In a copy of the
    deployment (the real one must never learn from held-out articles), simulated users ask held-out
    questions that were never asked with feedback and rate the answers as in the rounds (same noise);
    the new preference pairs alone go to `ragtune eval preferences` (base vs adapter, paired)."""
    import shutil

    from ragtune.data.beir import iter_jsonl
    from ragtune.feedback import FeedbackStore

    home = HOME.parent / f"{HOME.name}-confirm"
    if home.exists():
        shutil.rmtree(home)
    shutil.copytree(HOME, home, ignore=shutil.ignore_patterns("dpo-select", "export-*", "server.log", "steps.json",
                                                              "reader-stage1"))
    measured = {ex.id for ex in answer_sample}
    pool = [ex for ex in held if ex.id not in measured]
    batch = random.Random(args.seed + 99).sample(pool, min(len(pool), args.dpo_confirm))
    rated: list[str] = []
    with Server(home) as srv:
        fb = simulate_user(srv.url, key["user"], batch, [ex for ex in held if ex not in batch], args.noise,
                           args.seed + 99, rated)
    store = FeedbackStore(home)
    store.export(home / "export", args.test_fraction, NAME)
    store.close()
    new = set(rated)
    fresh = [r for r in iter_jsonl(home / "export" / "preferences.jsonl") if r.get("answer_id") in new]
    data = home / "fresh-preferences.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in fresh))
    cmd = [sys.executable, "-m", "ragtune", "eval", "preferences", "-c", NAME, "--data", str(data), "--adapter", adapter,
           "--max-length", str(args.dpo_max_length), "--json"]
    out = subprocess.run(cmd, env={**os.environ, "RAGTUNE_HOME": str(home)}, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"ragtune eval preferences failed:\n{out.stderr[-3000:]}")
    shutil.rmtree(home)  # 1.3 GB; the pairs and the verdict are what is kept
    return {"feedback_given": fb, "pairs": len(fresh), "verdict": json.loads(out.stdout)}


def paired(a: dict, b: dict) -> dict:
    from ragtune.evaluate.compare import compare_paired

    c = compare_paired(a, b)
    return {"delta": c.delta, "p": c.p_value, "ci": [c.ci_low, c.ci_high]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-articles", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--per-round", type=int, default=180, help="training-split questions the users ask per round")
    ap.add_argument("--answer-sample", type=int, default=120, help="held-out questions answered per round")
    ap.add_argument("--noise", type=float, default=0.1)
    ap.add_argument("--test-fraction", type=float, default=0.3)
    ap.add_argument("--min-feedback-queries", type=int, default=15)
    ap.add_argument("--epochs", type=float, default=4.0)
    ap.add_argument("--dpo-epochs", type=float, default=2.0)
    ap.add_argument("--dpo-max-length", type=int, default=512,
                    help="tokens per prompt + answer (passages the answers quote kept first)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tasks", default="tune,embedder,reader", help="flywheel tasks (a round already run keeps its own)")
    ap.add_argument("--reader-rounds", type=int, default=3,
                    help="the reader task runs in the first N rounds only (it is the costly one on a CPU)")
    ap.add_argument("--reader-stage1-steps", type=int, default=450,
                    help="SQuAD steps for the reader the reader task starts from (0: start from the bare encoder)")
    ap.add_argument("--reader-stage1", help="a trained span reader to start from instead (e.g. benchmarks/answers.py's "
                    "reader-squad, <cache>/answers-home/reader-squad/model: SQuAD only, 2118 steps)")
    ap.add_argument("--only-reader-stage1", action="store_true", help="train the stage-1 reader and stop")
    ap.add_argument("--dpo-sft-weights", default="0,1",
                    help="DPO variants side by side: weights of the language-modelling loss on the chosen answers "
                         "(0: plain DPO, 1: RPO, ragtune's default)")
    ap.add_argument("--dpo-select", default="5e-5:1,2e-4:1",
                    help="RPO candidates LR:EPOCHS, each trained on the older 80%% of the training pairs and scored "
                         "on the newer 20%% of them; the best is then trained on all training pairs and gated on the "
                         "held-out ones ('' to skip)")
    ap.add_argument("--dpo-confirm", type=int, default=0,
                    help="held-out questions users ask (in a copy of the deployment) for fresh preference pairs "
                         "that re-judge the selected adapter (0: skip)")
    ap.add_argument("--skip-dpo", action="store_true", help="write the report without the DPO step")
    ap.add_argument("--stop-before-dpo", action="store_true", help="end after the rounds (re-run without it for DPO)")
    args = ap.parse_args()

    from ragtune.collection import Collection
    from ragtune.data.squad import load_squad
    from ragtune.ingest.datasets import index_contexts
    from ragtune.serve.keys import KeyStore

    HOME.mkdir(parents=True, exist_ok=True)
    base_reader = reader_stage1(args) if "reader" in args.tasks.split(",") else None
    if args.only_reader_stage1:
        print(f"stage-1 reader: {base_reader}")
        return
    steps = Steps(HOME)
    covid = load_squad(DATA / "covidqa" / "covidqa-dev.json")
    train, held = split_articles(covid, args.train_articles, args.seed)
    asked = random.Random(args.seed).sample(train, min(len(train), args.rounds * args.per_round))
    answer_sample = sorted(random.Random(args.seed + 1).sample(held, min(len(held), args.answer_sample)), key=lambda e: e.id)

    def index() -> dict:
        with Collection.create(HOME, NAME, exist_ok=True) as coll:
            report = index_contexts(coll, covid, "covidqa-dev", HOME)
            return {"articles": report.seen, "chunks": coll.store.count()}

    indexed = steps("index", index)

    def keys() -> dict:
        store = KeyStore(HOME)
        user, evaluator = store.create("sim-user", role="user")[0], store.create("evaluator", role="user")[0]
        store.close()
        return {"user": user, "evaluator": evaluator}

    key = steps("keys", keys)
    qrels = held_out_qrels(held)
    rounds = []
    for r in range(args.rounds + 1):
        with Server() as srv:
            quality = steps(f"measure round {r}", lambda: measure(srv.url, key["evaluator"], held, qrels, answer_sample))
            if r == args.rounds:
                rounds.append({"round": r, **quality})
                break
            batch = asked[r * args.per_round:(r + 1) * args.per_round]
            others = [ex for ex in train if ex not in batch]
            fb = steps(f"users round {r + 1}", lambda: simulate_user(srv.url, key["user"], batch, others, args.noise,
                                                                     args.seed + r))
        record = steps(f"flywheel round {r + 1}", lambda: flywheel(args, r + 1, base_reader))
        rounds.append({"round": r, **quality, "feedback_given": fb, "flywheel": record})
    if args.stop_before_dpo:
        print("stopping before the DPO step (--stop-before-dpo)")
        return
    def wanted(step: str) -> bool:  # --skip-dpo still reports what the cache already holds
        return not (args.skip_dpo and step not in steps.log)

    preference: dict[str, dict] = {}
    for w in (float(x) for x in args.dpo_sft_weights.split(",")):
        # Plain DPO keeps its old step name, so a run cached before the variants existed is reused.
        dpo_step = f"dpo {args.dpo_epochs:g} epochs, max length {args.dpo_max_length}" + (f", sft {w:g}" if w else "")
        if wanted(dpo_step):
            preference[variant_name(w)] = steps(dpo_step, lambda w=w: dpo(args, w))
    candidates = []
    for lr, epochs in ((float(a), float(b)) for a, b in (c.split(":") for c in args.dpo_select.split(",") if c)):
        name = f"dpo candidate lr {lr:g}, {epochs:g} epochs, max length {args.dpo_max_length}"
        if wanted(name):
            candidates.append(steps(name, lambda lr=lr, epochs=epochs: dpo_candidate(args, lr, epochs)))
    if candidates:
        best = max(candidates, key=lambda c: c["val_after"])  # ties: the first listed (the gentler setting)
        name = f"dpo selected lr {best['lr']:g}, {best['epochs']:g} epochs, max length {args.dpo_max_length}, sft 1"
        if wanted(name):
            preference[f"{SELECTED}: lr {best['lr']:g}, {best['epochs']:g} epochs"] = steps(
                name, lambda: dpo(args, 1.0, best["lr"], best["epochs"]))
    confirmation = None
    confirm_step = f"dpo confirmation on {args.dpo_confirm} held-out questions' pairs"
    if candidates and args.dpo_confirm and wanted(confirm_step):
        confirmation = steps(confirm_step, lambda: confirm_dpo(args, "flywheel-dpo-sft-selected", held, answer_sample,
                                                               key))

    mean = lambda d: sum(d.values()) / len(d)  # noqa: E731
    summary = []
    for r, row in enumerate(rounds):
        out = {"round": r, "nDCG@10": mean(row["nDCG@10"]), "F1": mean(row["F1"]),
               "queries": len(row["nDCG@10"]), "answers": len(row["F1"])}
        if r:
            out["vs_round0"] = {m: paired(rounds[0][m], row[m]) for m in ("nDCG@10", "F1")}
            out["vs_previous"] = {m: paired(rounds[r - 1][m], row[m]) for m in ("nDCG@10", "F1")}
        fw = rounds[r - 1].get("flywheel") if r else None
        if fw:
            out["promoted"] = {t: bool(v.get("promoted")) for t, v in fw["tasks"].items()}
            out["gate"] = {t: (v.get("signals") or v.get("gate") or v.get("why")) for t, v in fw["tasks"].items()}
        summary.append(out)
    write(args, indexed, rounds, summary, preference, candidates, steps, confirmation)


def reading(summary: list) -> str:
    """The issue's target, read off the table: each promoted round at least as good as the one
    before, and the last round significantly better than round 0 on retrieval and on answers."""
    last = summary[-1]["vs_round0"]
    worse = [s["round"] for s in summary[1:] if any(s["vs_previous"][m]["delta"] < 0 and s["vs_previous"][m]["p"] < 0.05
                                                     for m in ("nDCG@10", "F1"))]
    lines = [f"- Every round at least as good as the one before: {'yes' if not worse else f'no (rounds {worse})'}."]
    for m, what in (("nDCG@10", "retrieval"), ("F1", "answers")):
        d, pv = last[m]["delta"], last[m]["p"]
        lines.append(f"- Round {summary[-1]['round']} vs round 0, {what}: Δ {d:+.4f}, p {pv:.4f}: "
                     f"{'significantly better (target met)' if d > 0 and pv < 0.05 else 'not significantly better (target missed)'}.")
    lines.append("- Rounds with nothing promoted measure exactly what the round before did: the served results are "
                 "deterministic (hybrid ties broken by point id), so any change is the promotion's.")
    return "\n".join(lines)


def variant_name(w: float) -> str:
    return "plain DPO" if not w else f"DPO + {w:g} × LM loss on chosen (RPO)"


def dpo_text(preference: dict[str, dict], candidates: list[dict], args) -> str:
    first = next(iter(preference.values()))
    res = first["result"]
    rows = [["before (base SmolLM2-135M)", f"{res['before']['accuracy']:.3f}", f"{res['before']['margin']:+.2f}", "", ""]]
    for label, p in preference.items():
        r, g = p["result"], p["result"].get("gate") or {}
        rows.append([f"{label}: {r['steps']} steps, {r['train_seconds']:.0f} s", f"{r['after']['accuracy']:.3f}",
                     f"{r['after']['margin']:+.2f}", str(g.get("wins_ties_losses")),
                     f"p {g['p_value']:.4f} → {'served' if g.get('promote') else 'refused (kept, not served)'}"
                     if g else "not run"])
    return (f"{first['export']['preferences']} preference pairs (correction chosen over the answer given); "
            f"`ragtune train preferences` holds out the newest {int(res['after']['pairs'])} and trains on the rest "
            f"({res.get('rows_too_long', 0)} rows too long for {args.dpo_max_length} tokens even with only the "
            f"passages their answers quote). Each prompt keeps the passages the answers quote first, then the others "
            f"in served order, as many as fit (before this, trl cut the answers off the end of half the pairs, whose "
            f"prompts carry all 8 served passages: 10 steps moved nothing). Variants side by side on the same pairs; "
            f"the gate is a paired test on per-pair right/wrong (chosen likelier than rejected) against the base.\n\n"
            + table(["", "held-out preference accuracy", "mean margin (nats, chosen − rejected)",
                     "pairs won/same/lost vs base", "gate"], rows) + (candidates_text(candidates) if candidates else ""))


def candidates_text(candidates: list[dict]) -> str:
    c0 = candidates[0]
    rows = [[f"lr {c['lr']:g}, {c['epochs']:g} epochs", c["steps"], f"{c['val_before']:.3f}", f"{c['val_after']:.3f}",
             f"{c['val_margin_after']:+.2f}", f"{c['train_seconds']:.0f}"] for c in candidates]
    return (f"\n\nLearning rate and epochs of RPO chosen without the held-out pairs: each candidate trains on the older "
            f"{c0['train_pairs']} of the training pairs and is scored on the newer {c0['val_pairs']} of them; the best "
            f"validation accuracy (ties: the first listed) is the 'selected' row above, trained on all training "
            f"pairs.\n\n" + table(["candidate", "steps", "validation accuracy before", "after",
                                    "validation margin after", "train seconds"], rows))


def confirmation_text(c: dict) -> str:
    v, fb = c["verdict"], c["feedback_given"]
    w, t, l_ = v["wins_ties_losses"]
    return f"""
### The selected adapter on pairs no setting has seen

In a copy of the deployment, simulated users asked {fb['asked']} held-out questions (articles never asked about
with feedback, never trained on; not the answer sample above) and rated the answers as in the rounds
({fb['up']} up / {fb['down']} down, {fb['noisy']} noisy): {c['pairs']} new preference pairs, scored by
`ragtune eval preferences` (base vs the selected adapter, paired; {v['too_long']} too long left out).

| pairs | accuracy, base | accuracy, adapter | won/same/lost | mean margin, base → adapter | p | verdict |
|---|---|---|---|---|---|---|
| {v['pairs']} | {v['accuracy_before']:.3f} | {v['accuracy_after']:.3f} | {w}/{t}/{l_} | {v['margin_before']:+.2f} → {v['margin_after']:+.2f} | {v['p_value']:.4f} | {'better' if v['promote'] else 'not better'} |
"""


def write(args, indexed: dict, rounds: list, summary: list, preference: dict[str, dict], candidates: list[dict],
          steps, confirmation: dict | None = None) -> None:
    # The JSON's top-level DPO figures: the selected setting when it ran, else ragtune's default variant.
    from ragtune.train.preference import PreferenceTrainConfig

    default = variant_name(PreferenceTrainConfig().sft_weight)
    chosen = next((k for k in preference if k.startswith(SELECTED)), default)
    res = (preference.get(chosen) or next(iter(preference.values())))["result"] if preference else {}
    stage1 = (f"`{args.reader_stage1}`" if args.reader_stage1 else
              f"{args.reader_stage1_steps} steps, benchmarks/answers.py's recipe")
    acc_before = (res.get("before") or {}).get("accuracy")
    acc_after = (res.get("after") or {}).get("accuracy")
    rows = []
    for s in summary:
        vs0 = s.get("vs_round0", {})
        rows.append([s["round"], f"{s['nDCG@10']:.4f}",
                     f"{vs0['nDCG@10']['delta']:+.4f} (p {vs0['nDCG@10']['p']:.4f})" if vs0 else "",
                     f"{100 * s['F1']:.1f}", f"{100 * vs0['F1']['delta']:+.1f} (p {vs0['F1']['p']:.4f})" if vs0 else "",
                     ", ".join(f"{t} {'promoted' if v else 'refused'}" for t, v in s.get("promoted", {}).items())])
    gate_rows = []
    for r, row in enumerate(rounds[:-1], start=1):
        fw = row["flywheel"]
        emb, rd, tn = fw["tasks"].get("embedder", {}), fw["tasks"].get("reader", {}), fw["tasks"].get("tune", {})
        ttxt = (f"{tn['chosen'] or 'kept'} (MRR@10 Δ {tn['delta']:+.4f}, p {tn['p']:.3f}, {tn['confirm_questions']} q)"
                if tn.get("ran") else tn.get("why", ""))
        sig = "; ".join(f"{g['name']} {g['queries']} q Δ {g['delta']:+.4f} p {g['p']:.3f} {g['verdict']}"
                        for g in emb.get("signals", [])) or emb.get("why", "")
        rg = rd.get("gate")
        rtxt = (f"{rg['questions']} q F1 {rg['baseline_scores']['F1']:.3f} → {rg['candidate_scores']['F1']:.3f} "
                f"p {rg['p_value']:.3f}" if rg else rd.get("why", ""))
        g = row["feedback_given"]
        gate_rows.append([r, f"{g['asked']} asked, {g['up']} up / {g['down']} down ({g['noisy']} noisy)",
                          json.dumps(fw["feedback"].get("labelled_queries", {}).get(NAME, {})), ttxt, sig,
                          "promoted" if emb.get("promoted") else "refused", rtxt,
                          "applied" if rd.get("promoted") else ("refused" if rd.get("ran") else "not run")])
    step_rows = [[k, v] for k, v in steps.seconds().items()]  # this run's steps, not older settings' in the cache
    body = f"""
COVID-QA dev: {indexed['articles']} articles → {indexed['chunks']} chunks, default pipeline (hybrid retrieval,
extractive sentence-baseline answers). By-article split (seed {args.seed}): the users ask questions of
{args.train_articles} articles ({args.per_round} per round, {args.noise:.0%} of ratings deliberately wrong); the
{summary[0]['queries']} questions of the other articles that have a gold chunk are held out (retrieval), a seeded
{summary[0]['answers']} of them are answered each round. Flywheel: `ragtune flywheel -c covidqa --no-synthetic`
(feedback only), test fraction {args.test_fraction}, min {args.min_feedback_queries} held-out feedback questions,
{args.epochs:g} epochs. The reader task starts from a span reader trained on SQuAD ({stage1};
never on COVID-QA), trains on the feedback's QA rows and on the same questions over their top-8 retrieved chunks,
and is judged against the collection's current reader (the sentence baseline) on the newest
{args.test_fraction:.0%} of the feedback's QA rows, answered as the collection serves them (search, then read).

## Held-out quality per round (paired randomisation tests against round 0)

{table(["round", "nDCG@10", "Δ vs round 0", "answer F1", "Δ F1 vs round 0", "what the round before promoted"], rows)}

## Reading

{reading(summary)}

## What each flywheel run saw and decided

{table(["run", "feedback given", "labelled queries exported (train/test)", "tune (settings; confirmation half)",
        "embedder gate (held-out sets)", "embedder",
        "reader gate (newer QA rows)", "reader"], gate_rows)}

## Preference tuning on the exported pairs (DPO, LoRA, {args.dpo_epochs:g} epochs, max length {args.dpo_max_length})

{dpo_text(preference, candidates, args) if preference else
 "Not run in this measurement (--skip-dpo): see benchmarks/results/preference.md for DPO on SQuAD pairs."}
{confirmation_text(confirmation) if confirmation else ""}

## Seconds per step

{table(["step", "seconds"], step_rows)}
"""
    write_report("flywheel", "Flywheel: a simulated deployment on COVID-QA", body)
    (RESULTS / "flywheel.json").write_text(json.dumps({
        "measured_at_commit": git_commit(), "args": vars(args),
        "rounds": [{k: v for k, v in s.items()} for s in summary],
        "nDCG@10": [s["nDCG@10"] for s in summary], "F1": [s["F1"] for s in summary],
        "p_vs_round0": {m: [s["vs_round0"][m]["p"] for s in summary[1:]] for m in ("nDCG@10", "F1")},
        "dpo": {"pairs": next(iter(preference.values()))["export"]["preferences"], "variant": chosen,
                "held_out_accuracy_before": acc_before,
                "held_out_accuracy_after": acc_after, "gate_promote": (res.get("gate") or {}).get("promote"),
                "gate_p": (res.get("gate") or {}).get("p_value"), "result": res,
                "variants": {k: p["result"] for k, p in preference.items()}, "candidates": candidates,
                "confirmation": confirmation}
        if preference else None,
    }, indent=2, default=str))


if __name__ == "__main__":
    main()
