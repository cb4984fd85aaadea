"""Answers that are right offline: trained extractive readers vs the sentence baseline and the
local generator (raw and behind the grounding guard), in one run on the same questions.

Readers (MiniLM-L6 + a span head; SQuAD v1.1 dev split by article as in benchmarks/reranker.py,
the 8 test articles never trained on):
  sentence-baseline    no training: the context sentence closest to the question
  reader-squad         trained on the 36 SQuAD train articles (+ SQuAD-v2-style unanswerable pairs)
  reader-domain        reader-squad + the COVID-QA collection's synthetic QA (`synth answers`, no labels)
  reader-supervised    reader-squad + the gold QA of the COVID-QA *training* articles
  R+retrieved          reader-domain / reader-supervised, then the same questions over the chunks search
                       returns for them (answer-bearing ones labelled, the rest "no answer")
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
import json
import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import CACHE, DATA, RESULTS, Steps, progress, split_squad_articles, table, write_report  # noqa: E402

from ragtune.answer import Answerer  # noqa: E402
from ragtune.answer.abstain import calibrate_reader_margin, calibrate_threshold, confidences, reader_margin  # noqa: E402
from ragtune.answer.citations import strip_citations  # noqa: E402
from ragtune.answer.extractive import SentenceReader, SpanReader  # noqa: E402
from ragtune.answer.grounding import ground, make_scorer  # noqa: E402
from ragtune.collection import Collection  # noqa: E402
from ragtune.config import AnswerConfig  # noqa: E402
from ragtune.data.squad import QAExample, load_squad, sample, split_by_article  # noqa: E402
from ragtune.data.text import ABSTAIN, is_abstention  # noqa: E402
from ragtune.evaluate.answers import evaluate_answers  # noqa: E402
from ragtune.evaluate.compare import compare_paired  # noqa: E402
from ragtune.evaluate.qa import score_answer, score_answers  # noqa: E402
from ragtune.evaluate.reader import per_question, reading_scores  # noqa: E402
from ragtune.ingest.datasets import index_contexts  # noqa: E402
from ragtune.retrieve import Searcher  # noqa: E402
from ragtune.synth.reader_contexts import retrieved_contexts  # noqa: E402
from ragtune.train.reader import ReaderTrainConfig, train_reader, unanswerable_pairs  # noqa: E402
from ragtune.types import Principal  # noqa: E402

BASE = "all-MiniLM-L6-v2"


def dev_set(examples: list[QAExample], n: int, seed: int = 0) -> list[QAExample]:
    """``n`` answerable dev questions and a quarter as many unanswerable pairs (abstention)."""
    chosen = random.Random(seed).sample(examples, min(n, len(examples)))
    return chosen + unanswerable_pairs(examples, 1.0, seed)[: n // 4]


def reader_squad(step: Steps, home: Path, squad: dict[str, list[QAExample]], args) -> str:
    out = home / "reader-squad"
    dev = random.Random(0).sample(squad["dev"], min(args.dev_questions, len(squad["dev"])))

    def train() -> dict:
        config = ReaderTrainConfig(epochs=args.epochs, batch_size=16, eval_every=args.eval_every, checkpoint_every=100,
                                   learning_rate=args.lr, max_steps=args.steps, max_length=args.max_length)
        r = train_reader(BASE, squad["train"], out / "model", config, evaluate=lambda reader: reading_scores(reader, dev),
                         checkpoint_dir=out / "checkpoints", on_progress=progress)
        return {"path": str(out / "model"), "steps": r.steps, "loss": r.train_loss, "seconds": r.seconds,
                "windows": r.metrics["windows"], "curve": r.metrics["curve"]}

    return step("train reader-squad (SQuAD train articles)", train)["path"]


def continue_reader(step: Steps, home: Path, name: str, base: str, examples_of, epochs: float,
                    max_steps: int = -1, data: str = "") -> str:
    """``base`` trained further on ``examples_of()`` (no held-out curve: the tables measure it);
    ``base`` itself when there is nothing to train on (the report says so). ``data`` names the
    training data in the step and folder, so other data never resumes this training."""
    out = home / (f"{name}-{data}" if data else name)

    def train() -> dict:
        examples = examples_of()
        if not examples:
            return {"path": base, "questions": 0, "steps": 0, "seconds": 0.0}
        r = train_reader(base, examples, out / "model", ReaderTrainConfig(epochs=epochs, max_steps=max_steps, batch_size=16,
                                                                            learning_rate=3e-5),
                         checkpoint_dir=out / "checkpoints", on_progress=progress)
        return {"path": str(out / "model"), "questions": len(examples), "steps": r.steps, "seconds": r.seconds}

    return step(f"train {name}" + (f" ({data})" if data else ""), train)["path"]


def covid_collection(step: Steps, home: Path, covid: list[QAExample]) -> Collection:
    coll = Collection.create(home, "covidqa", exist_ok=True)
    step("covidqa: index", lambda: index_contexts(coll, covid, "covidqa-dev", home, progress).chunks)
    return coll


def synthetic_qa(step: Steps, home: Path, coll: Collection, chunks: int, reader_path: str,
                 teacher_sample: int = 60) -> list[QAExample]:
    """The collection's own QA, no labels: SmolLM2 writes questions (`synth queries`, round-trip
    filtered), reader-squad answers them on their chunk where confident (`synth.reader_answers`).
    SmolLM2 as the *answer* teacher (`synth answers`) is tried on a sample too, for the record."""
    from ragtune.models.generator import LocalGenerator
    from ragtune.synth.answers import AnswerSynthConfig, synthesize_answers
    from ragtune.synth.filters import FilterConfig, filter_queries
    from ragtune.synth.queries import QueryGenConfig, generate_queries
    from ragtune.synth.reader_answers import reader_answers

    generator = LocalGenerator(home=home)
    if teacher_sample:
        step("covidqa: synth answers, SmolLM2 as answer teacher (sample)", lambda: synthesize_answers(
            coll, generator, home / "synth-answers", AnswerSynthConfig(max_chunks=min(chunks, teacher_sample)),
            progress).to_dict())
    folder = home / f"synth-questions-{chunks}"
    step(f"covidqa: synth questions (SmolLM2, {chunks} chunks)", lambda: generate_queries(
        coll, generator, folder, QueryGenConfig(max_chunks=chunks, types=("question",)), progress))
    step(f"covidqa: filter questions ({chunks} chunks)", lambda: filter_queries(coll, folder, FilterConfig(),
                                                                                progress).to_dict())
    out = home / f"reader-qa-{chunks}.json"
    step(f"covidqa: reader-squad answers the synthetic questions ({chunks} chunks)", lambda: reader_answers(
        coll, folder, SpanReader(reader_path), out, splits=("train", "dev"), on_progress=progress))
    return load_squad(out)


def choose_settings(coll: Collection, searcher: Searcher, reader_path: str, examples: list[QAExample]) -> dict:
    """``answer.k`` and ``reader.length_prior`` for COVID-QA, chosen by reader-squad's F1 on questions of
    the *training* articles (their gold answers: the one use of COVID-QA labels outside reader-supervised;
    never the test articles). COVID-QA answers are clauses (median 9 words), SQuAD's names and figures."""
    reader = SpanReader(reader_path)
    grid = []
    for k in (5, 8):
        answerer = Answerer(coll, reader=reader, config=AnswerConfig(mode="extractive", k=k), searcher=searcher)
        for prior in (0.0, 0.5, 1.0, 1.5):
            reader.length_prior = prior
            f1 = statistics.fmean(score_answer(answerer.ask(ex.question, Principal()).text, ex.answers)["f1"]
                                  for ex in progress_over(examples, f"k={k} prior={prior}"))
            grid.append({"k": k, "length_prior": prior, "F1": f1 * 100})
    best = max(grid, key=lambda g: g["F1"])
    return {"k": best["k"], "length_prior": best["length_prior"], "questions": len(examples), "grid": grid}


def null_margin(answerer: Answerer, answerable: list[QAExample], unanswerable: list[QAExample]) -> dict:
    """``reader.null_margin`` from the collection's synthetic questions (answerable) and off-domain
    ones (SQuAD dev articles), over those that pass the retrieval threshold (`ragtune calibrate`'s rule)."""
    def margins(examples: list[QAExample], label: str) -> list[float | None]:
        return [reader_margin(answerer.ask(ex.question, Principal())) for ex in progress_over(examples, label)]

    margin, c = calibrate_reader_margin(margins(answerable, "margins: synthetic"), margins(unanswerable, "margins: off-domain"))
    return {"margin": margin, "calibration": None if c is None else vars(c)}


def progress_over(items: list, label: str):
    for i, item in enumerate(items, 1):
        progress(label, i, len(items))
        yield item


def answer_records(step: Steps, coll: Collection, home: Path, name: str, answerer: Answerer,
                   examples: list[QAExample]) -> list[dict]:
    def run() -> str:
        return str(evaluate_answers(answerer, examples, home=home, on_progress=progress).path)

    path = Path(step(f"covidqa: answers {name}", run))
    return [json.loads(line) for line in (path / "answers.jsonl").read_text().splitlines()]


def sentence_unit(records: list[dict]) -> list[dict]:
    """The same reads with ``reader.answer_unit=sentence``: the sentence(s) around each span."""
    return [{**r, "answer": " ".join(r["sentence"].split()), "prediction": " ".join(r["sentence"].split())}
            if r.get("sentence") else r for r in records]


def precision_agreement(reader_path: str, examples: list[QAExample]) -> dict[str, float]:
    """bf16 autocast (the default where the CPU computes it) against float32: share of identical
    spans, both F1s, and the read time of each (ms per question, gold context)."""
    import time

    out: dict[str, float] = {}
    spans = {}
    for precision in ("fp32", "bf16"):
        reader = SpanReader(reader_path, precision=precision)
        t = time.perf_counter()
        spans[precision] = [reader.read(ex.question, [ex.context]) for ex in examples]
        out[f"{precision}_ms"] = (time.perf_counter() - t) / len(examples) * 1000
        out[f"{precision}_F1"] = statistics.fmean(score_answer(s.text if s else "", ex.answers)["f1"]
                                                  for s, ex in zip(spans[precision], examples)) * 100
    out["same_span"] = statistics.fmean((a.text if a else None) == (b.text if b else None)
                                        for a, b in zip(spans["fp32"], spans["bf16"]))
    return out


def guarded(records: list[dict], scorer, threshold: float, reader, min_groundedness: float) -> list[dict]:
    """The generator's answers through the grounding guard, recomputed from each record's own
    passages (the answers are generated once): unsupported sentences removed; none left, or most
    of the answer unsupported → the reader's span of the same passages, or "I don't know" without
    a reader."""
    out = []
    for r in records:
        text = r["answer"]
        if not r["abstained"] and r["contexts"]:
            g = ground(text, r["contexts"], scorer, threshold, min_groundedness, r["question"])
            if not g.text:
                span = reader.read(r["question"], r["contexts"]) if reader is not None else None
                text = span.text if span is not None else ABSTAIN
            else:
                text = g.text
        out.append({**r, "answer": text, "prediction": strip_citations(text), "abstained": is_abstention(text)})
    return out


def unsupported_rate(records: list[dict], judge, threshold: float) -> float:
    """Share of the non-abstained answers with a sentence its passages do not support, by ``judge``;
    a sentence copied verbatim from a passage (every extractive answer) is supported as such."""
    answered = [r for r in records if not is_abstention(r["answer"]) and r["contexts"]]

    def unsupported(r: dict) -> bool:
        passages = " ".join(" ".join(c.split()) for c in r["contexts"])
        dropped = ground(r["answer"], r["contexts"], judge, threshold).dropped
        # a span may hold the paper's own "[12]", which strip_citations removes: either form is a copy
        return any(" ".join(strip_citations(s).split()) not in passages and " ".join(s.split()) not in passages
                   for s in dropped)

    return sum(unsupported(r) for r in answered) / len(answered) if answered else 0.0


def statement(ex: QAExample, answer: str) -> str:
    """A supported statement that is not a copy of the passage: the question with its answer."""
    return f"{ex.question.strip().rstrip('?')}: {answer}."


def support_set(examples: list[QAExample], n: int, seed: int = 0) -> list[tuple[str, str, int, str]]:
    """(sentence, passage, label, question asked) to measure a support scorer: a question restated with
    its answer (1: supported, in other words than the passage's); the same with another question's answer
    (0: a changed fact); another article's restated question (0: off-topic)."""
    rng = random.Random(seed)
    answerable = [ex for ex in examples if ex.answers]
    out = []
    for ex in rng.sample(answerable, min(n, len(answerable))):
        other = rng.choice([o for o in answerable if o.article_id != ex.article_id])
        out.append((statement(ex, ex.answers[0]), ex.context, 1, ex.question))
        if other.answers[0].lower() not in ex.context.lower():
            out.append((statement(ex, other.answers[0]), ex.context, 0, ex.question))
        out.append((statement(other, other.answers[0]), ex.context, 0, ex.question))
    return out


def scorer_quality(scorer, rows: list[tuple[str, str, int, str]]) -> dict[str, float]:
    """ROC AUC of the scorer's support, and the accuracy-best threshold (midway between neighbouring
    scores; chosen here, on SQuAD dev, never on the test sets)."""
    scores = [(scorer.score(s, [p], q), y) for s, p, y, q in rows]
    pos = [x for x, y in scores if y == 1]
    neg = [x for x, y in scores if y == 0]
    auc = sum((p > q) + 0.5 * (p == q) for p in pos for q in neg) / (len(pos) * len(neg))
    values = sorted({x for x, _ in scores})
    cuts = [(a + b) / 2 for a, b in zip(values, values[1:])] or values
    best = max(cuts, key=lambda t: sum((x >= t) == bool(y) for x, y in scores))
    acc = sum((x >= best) == bool(y) for x, y in scores) / len(scores)
    return {"auc": auc, "threshold": best, "accuracy": acc}


def qa_row(records: list[dict], examples: list[QAExample], judge, threshold: float) -> dict:
    s = score_answers([r["prediction"] for r in records], [ex.answers for ex in examples])
    answerable = [r for r, ex in zip(records, examples) if ex.answers]
    return {"EM": s.exact_match * 100, "F1": s.f1 * 100, "abstention_precision": s.abstention_precision,
            "abstention_recall": s.abstention_recall, "unsupported_rate": unsupported_rate(records, judge, threshold),
            "answer_in_context": statistics.fmean(bool(r["answer_in_context"]) for r in answerable) * 100,
            "read_ms_p50": statistics.median(r["timings"].get("read", r["timings"].get("generate", 0)) * 1000
                                             for r in records if r["timings"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--steps", type=int, default=-1, help="reader-squad steps (-1: --epochs decides)")
    ap.add_argument("--max-length", type=int, default=384, help="reader-squad training window (tokens)")
    ap.add_argument("--lr", type=float, default=None, help="reader-squad learning rate (default: the trainer's)")
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--dev-questions", type=int, default=300)
    ap.add_argument("--squad-test", type=int, default=600, help="SQuAD held-out questions read with gold context")
    ap.add_argument("--covid-answerable", type=int, default=120)
    ap.add_argument("--unanswerable", type=int, default=40)
    ap.add_argument("--synth-chunks", type=int, default=400)
    ap.add_argument("--settings-questions", type=int, default=200,
                    help="training-article questions that choose answer.k and reader.length_prior")
    ap.add_argument("--continue-steps", type=int, default=-1, help="cap on reader-domain/-supervised steps (smoke runs)")
    ap.add_argument("--teacher-sample", type=int, default=60,
                    help="chunks SmolLM2 answers as a teacher, for the record (0: skip; it kept 0 of 8 answers before)")
    ap.add_argument("--skip-continued", action="store_true",
                    help="leave out reader-domain and reader-supervised (a session too short for their training)")
    ap.add_argument("--skip-generator", action="store_true",
                    help="leave out the SmolLM2 rows (about a minute per question on a loaded 2-core CPU)")
    ap.add_argument("--until", choices=["reader-squad"],
                    help="stop after this step and its SQuAD held-out figure (the rest resumes later)")
    ap.add_argument("--cache", default="answers-home")
    ap.add_argument("--report", default="answers")
    args = ap.parse_args()
    home = CACHE / args.cache
    home.mkdir(parents=True, exist_ok=True)
    step = Steps(home)
    squad = split_squad_articles(load_squad(DATA / "squad" / "dev-v1.1.json"))
    squad_reader = reader_squad(step, home, squad, args)
    # SQuAD held-out articles, gold context: the readers alone; reader-squad's figure comes first, so a
    # run stopped after its (long) training still has it.
    squad_test = sample(squad["test"], args.squad_test)

    def read_squad_test(name: str, make_reader) -> dict:
        # make_reader: a resumed run whose reading is cached loads no model for it
        return step(f"squad test: {name} with gold context", lambda: per_question(make_reader(), squad_test))

    first = read_squad_test("reader-squad", lambda: SpanReader(squad_reader))
    f1 = statistics.fmean(s["F1"] for s in first.values())
    print(f"\nreader-squad, SQuAD held-out with gold context: F1 {f1:.3f}")
    if args.until == "reader-squad":
        return

    covid = load_squad(DATA / "covidqa" / "covidqa-dev.json")
    covid_train, covid_test = split_by_article(covid, 0.5)
    coll = covid_collection(step, home, covid)
    synth = synthetic_qa(step, home, coll, args.synth_chunks, squad_reader, args.teacher_sample)
    searcher = Searcher(coll)
    settings = step("covidqa: answer.k and reader.length_prior chosen on the training articles", lambda: choose_settings(
        coll, searcher, squad_reader, sample(covid_train, args.settings_questions, seed=5)))
    prior = settings["length_prior"]
    readers: dict[str, str | None] = {"sentence-baseline": None, "reader-squad": squad_reader}
    if not args.skip_continued:
        def over_retrieved(examples: list[QAExample]) -> list[QAExample]:
            return retrieved_contexts(coll, examples, k=settings["k"], searcher=searcher, on_progress=progress)[0]

        domain = continue_reader(step, home, "reader-domain", squad_reader, lambda: synth, 2.0, args.continue_steps,
                                 f"{args.synth_chunks}-chunks")
        supervised = continue_reader(step, home, "reader-supervised", squad_reader, lambda: covid_train, 2.0,
                                     args.continue_steps)
        readers["reader-domain"], readers["reader-supervised"] = domain, supervised
        # ... then the same questions over the chunks search returns for them (synth.reader_contexts)
        readers["reader-domain+retrieved"] = continue_reader(
            step, home, "reader-domain+retrieved", domain, lambda: over_retrieved(synth), 2.0, args.continue_steps,
            f"{args.synth_chunks}-chunks-k{settings['k']}")
        readers["reader-supervised+retrieved"] = continue_reader(
            step, home, "reader-supervised+retrieved", supervised, lambda: over_retrieved(covid_train), 2.0,
            args.continue_steps, f"k{settings['k']}")
    loaded = {name: SentenceReader(coll.embedder) if path is None else SpanReader(path, length_prior=prior)
              for name, path in readers.items()}

    # Support scorers, measured (and their threshold chosen) on SQuAD dev articles, never on the test sets.
    rows = support_set(squad["dev"], 300)
    scorers = {"overlap": make_scorer("overlap"), "embedder": make_scorer("embedder", coll.embedder)}
    quality = step("grounding scorers on SQuAD dev (question-aware, names)", lambda: {n: scorer_quality(s, rows) for n, s in scorers.items()})
    guard_name = max(quality, key=lambda n: quality[n]["auc"])
    guard, guard_t = scorers[guard_name], quality[guard_name]["threshold"]
    judge_name = next(n for n in scorers if n != guard_name)  # the rate is judged by the *other* scorer
    judge, judge_t = scorers[judge_name], quality[judge_name]["threshold"]

    # SQuAD's answers are names and figures: its readings use no length prior (the model's own spans);
    # the step is named by the model's folder, so a reader trained on other data is read again.
    squad_scores = {name: read_squad_test(name if path is None else Path(path).parent.name,
                                          lambda p=path: SentenceReader(coll.embedder) if p is None else SpanReader(p))
                    for name, path in readers.items()}
    precision = step("squad test: reader-squad in bf16 vs fp32", lambda: precision_agreement(
        squad_reader, squad_test[:100]))

    # COVID-QA held-out articles, retrieve-then-answer, + unanswerable questions (gold: abstain).
    eval_set = sample(covid_test, args.covid_answerable) + [
        QAExample(f"na-{ex.id}", ex.question, "", []) for ex in sample(squad["test"], args.unanswerable, seed=1)]
    k = coll.pipeline.answer.k

    def calibrate() -> float:
        # Label-free: the collection's synthetic questions should be answered, off-domain questions
        # (SQuAD dev articles, not the test ones) should not.
        return calibrate_threshold(confidences(searcher, [ex.question for ex in synth], Principal(), k),
                                   confidences(searcher, [ex.question for ex in squad["dev"][:200]], Principal(), k)
                                   ).threshold

    threshold = step("covidqa: abstention threshold (label-free)", calibrate)
    records: dict[str, list[dict]] = {}
    retrieval_only: dict[str, list[dict]] = {}
    chosen = f"k={settings['k']}, length prior {prior}"
    margins: dict[str, dict] = {}

    def answer_with_margin(name: str, label: str, answerer: Answerer) -> None:
        """``records[name]``: the reader's answers behind both cuts. The retrieval threshold alone is
        kept beside them; the reader's no-answer margin is the same calibration one level down
        (`ragtune calibrate`): synthetic vs off-domain questions that pass retrieval, per reader (the
        margin is on the model's own scale). Label-free."""
        retrieval_only[name] = records[name] = answer_records(step, coll, home, label, answerer, eval_set)
        margins[name] = step(f"covidqa: reader null margin {label} (label-free)", lambda: null_margin(
            answerer, synth, squad["dev"][:200]))
        if margins[name]["margin"] is not None:
            coll.pipeline.reader.null_margin = margins[name]["margin"]
            records[name] = answer_records(step, coll, home, f"{label}, null margin", answerer, eval_set)
            coll.pipeline.reader.null_margin = None

    for name, reader in loaded.items():
        config = AnswerConfig(mode="extractive", k=settings["k"], min_retrieval_confidence=threshold)
        answerer = Answerer(coll, reader=reader, config=config, searcher=searcher)
        if isinstance(reader, SpanReader):
            answer_with_margin(name, f"{name} ({chosen})", answerer)
        else:
            records[name] = answer_records(step, coll, home, f"{name} ({chosen})", answerer, eval_set)
    for name in [n for n, r in loaded.items() if isinstance(r, SpanReader)]:
        records[f"{name} (sentence)"] = sentence_unit(records[name])
    if "reader-domain" in readers:  # no COVID-QA label anywhere: the defaults, not the settings chosen above
        defaults = AnswerConfig(mode="extractive", min_retrieval_confidence=threshold)
        answer_with_margin("reader-domain (defaults)", "reader-domain (defaults)", Answerer(
            coll, reader=SpanReader(readers["reader-domain"]), config=defaults, searcher=searcher))
    if not args.skip_generator:
        from ragtune.models.generator import make_generator

        raw = AnswerConfig(mode="generative", grounding="off", min_retrieval_confidence=threshold)
        records["smollm2"] = answer_records(step, coll, home, "smollm2", Answerer(
            coll, make_generator(coll.pipeline.generator, home), config=raw, searcher=searcher), eval_set)
        floor = raw.min_groundedness
        records["smollm2-guarded"] = guarded(records["smollm2"], guard, guard_t, None, floor)
        best_reader = max([n for n in ("reader-squad", "reader-domain") if n in loaded], key=lambda n: statistics.fmean(
            s["F1"] for s in squad_scores[n].values()))  # chosen on SQuAD, not on COVID-QA
        records["smollm2-guarded+reader"] = guarded(records["smollm2"], guard, guard_t, loaded[best_reader], floor)
        shipped = AnswerConfig()
        if guard_name == shipped.grounding and abs(shipped.min_support - guard_t) > 1e-3:  # the default cut too
            records[f"smollm2-guarded+reader (default answer.min_support {shipped.min_support})"] = guarded(
                records["smollm2"], guard, shipped.min_support, loaded[best_reader], floor)

    covid_rows = {name: qa_row(r, eval_set, judge, judge_t) for name, r in records.items()}
    base = f1_of(records["sentence-baseline"], eval_set)
    vs = {name: compare_paired(base, f1_of(recs, eval_set)) for name, recs in records.items() if name != "sentence-baseline"}
    squad_rows = {name: {m: statistics.fmean(s[m] for s in per.values()) * 100 for m in ("EM", "F1")}
                  for name, per in squad_scores.items()}
    squad_vs = {name: compare_paired({q: s["F1"] for q, s in squad_scores["sentence-baseline"].items()},
                                     {q: s["F1"] for q, s in per.items()})
                for name, per in squad_scores.items() if name != "sentence-baseline"}
    margin_rows = {name: {"null_margin": margins[name]["margin"], "calibration": margins[name]["calibration"],
                          "retrieval_only": qa_row(recs, eval_set, judge, judge_t),
                          "vs_retrieval_only": compare_paired(f1_of(recs, eval_set), f1_of(records[name], eval_set))}
                   for name, recs in retrieval_only.items()}
    write_results(args, step, covid_rows, vs, squad_rows, squad_vs, quality, guard_name, judge_name, threshold,
                  len(eval_set), len(squad_test), precision, settings, margin_rows)


def f1_of(records: list[dict], examples: list[QAExample]) -> dict[str, float]:
    return {r["id"]: score_answer(r["prediction"], ex.answers)["f1"] for r, ex in zip(records, examples)}


def write_results(args, step: Steps, covid_rows, vs, squad_rows, squad_vs, quality, guard_name, judge_name,
                  threshold, n_covid, n_squad, precision, settings, margin_rows) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.report}.json").write_text(json.dumps({
        "covidqa": covid_rows, "squad_heldout": squad_rows, "grounding_scorers": quality, "guard": guard_name,
        "judge": judge_name, "abstention_threshold": threshold, "reader_precision": precision,
        "covidqa_settings": settings,
        "covidqa_reader_null_margin": {n: {**{k: v for k, v in m.items() if k != "vs_retrieval_only"},
                                           "delta_f1": m["vs_retrieval_only"].delta,
                                           "p_value": m["vs_retrieval_only"].p_value} for n, m in margin_rows.items()},
        "covidqa_vs_sentence_baseline": {n: {"delta_f1": c.delta, "p_value": c.p_value} for n, c in vs.items()},
        "squad_vs_sentence_baseline": {n: {"delta_f1": c.delta, "p_value": c.p_value} for n, c in squad_vs.items()},
        "steps": step.seconds()}, indent=2, default=str))
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}" if isinstance(v, float) and v <= 1 else f"{v:.1f}"  # noqa: E731
    covid_table = table(["system", "EM", "F1", "abstention precision", "abstention recall", "unsupported rate",
                         "answer in context (ceiling)", "p50 ms", "Δ F1 vs baseline", "p"],
                        [[n, *(fmt(r[m]) for m in ("EM", "F1", "abstention_precision", "abstention_recall",
                                                    "unsupported_rate", "answer_in_context", "read_ms_p50")),
                          "" if n not in vs else f"{vs[n].delta * 100:+.1f}", "" if n not in vs else f"{vs[n].p_value:.4f}"]
                         for n, r in covid_rows.items()])
    squad_table = table(["reader", "EM", "F1", "Δ F1 vs baseline", "p"],
                        [[n, f"{r['EM']:.1f}", f"{r['F1']:.1f}", "" if n not in squad_vs else f"{squad_vs[n].delta * 100:+.1f}",
                          "" if n not in squad_vs else f"{squad_vs[n].p_value:.4f}"] for n, r in squad_rows.items()])
    scorer_table = table(["scorer", "ROC AUC", "threshold", "accuracy"],
                         [[n, f"{q['auc']:.3f}", f"{q['threshold']:.3f}", f"{q['accuracy']:.3f}"] for n, q in quality.items()])
    margin_table = table(
        ["reader", "null margin", "calibration: synthetic answered / off-domain stopped (n)", "F1 retrieval only",
         "F1 + margin", "Δ F1", "p", "abstention precision / recall, retrieval only", "… + margin"],
        [[n, "n/a" if m["null_margin"] is None else f"{m['null_margin']:.2f}",
          "n/a" if m["calibration"] is None else f"{m['calibration']['answer_recall']:.2f} / "
          f"{m['calibration']['abstain_recall']:.2f} ({m['calibration']['n_answerable']}, {m['calibration']['n_unanswerable']})",
          f"{m['retrieval_only']['F1']:.1f}", f"{covid_rows[n]['F1']:.1f}", f"{m['vs_retrieval_only'].delta * 100:+.1f}",
          f"{m['vs_retrieval_only'].p_value:.4f}",
          f"{m['retrieval_only']['abstention_precision']:.3f} / {m['retrieval_only']['abstention_recall']:.3f}",
          f"{covid_rows[n]['abstention_precision']:.3f} / {covid_rows[n]['abstention_recall']:.3f}"]
         for n, m in margin_rows.items()])
    curve = step.log["train reader-squad (SQuAD train articles)"]["result"]["curve"]
    seconds = table(["step", "seconds"], [[k, v] for k, v in step.seconds().items()])
    write_report(args.report, "Answers offline: trained readers, the sentence baseline, SmolLM2 with and without the guard", f"""
## COVID-QA held-out articles, retrieve-then-answer ({n_covid} questions, {args.unanswerable} of them unanswerable)

Same questions for every row; the label-free abstention threshold ({threshold:.4f}) applies to all. EM / F1 in
points over all questions (an unanswerable one scores only for an abstention); unsupported rate: answers with a
sentence the passages do not support, judged by the `{judge_name}` scorer (the guard uses `{guard_name}`).
A row "R (sentence)" is R's own reads answered with the sentence around each span (`reader.answer_unit=sentence`).
Extractive rows read the retrieved chunks (`answer.use_parents` unset) with `answer.k={settings["k"]}` and
`reader.length_prior={settings["length_prior"]}`, chosen by reader-squad's F1 on {settings["questions"]} questions of the
*training* articles (table below); "reader-domain (defaults)" uses neither (k=5, no prior): no COVID-QA label at all.
The generator rows use the generative defaults (k=5, parent sections).

{covid_table}

### The reader's own abstention: retrieval threshold alone vs + the reader's calibrated no-answer margin

Span-reader rows above answer behind both cuts. `reader.null_margin` is calibrated per reader without
labels, as `ragtune calibrate` does: the collection's synthetic questions (answerable) vs SQuAD dev-article
questions (off-domain), over those that pass the retrieval threshold; the reader abstains when its no-answer
score beats its best span by more than the margin.

{margin_table}

### answer.k and reader.length_prior, chosen on the training articles (reader-squad, answerable questions)

{table(["k", "length prior", "F1"], [[g["k"], g["length_prior"], f"{g['F1']:.1f}"] for g in settings["grid"]])}

## SQuAD held-out articles, gold context ({n_squad} questions)

{squad_table}

## reader-squad in bf16 autocast vs float32 (100 SQuAD held-out questions, gold context)

Training and reading use bf16 autocast where the CPU computes it natively (`precision=auto`).
Same span {precision["same_span"]:.0%} of the time; F1 {precision["fp32_F1"]:.1f} (fp32) vs {precision["bf16_F1"]:.1f} (bf16);
{precision["fp32_ms"]:.0f} vs {precision["bf16_ms"]:.0f} ms per question.

## Grounding scorers (SQuAD dev: a question restated with its answer vs with another's answer, and off-topic statements)

{scorer_table}

## reader-squad learning curve (SQuAD dev articles, gold context)

{table(["step", "EM", "F1"], [[p["step"], f"{p['EM']:.3f}", f"{p['F1']:.3f}"] for p in curve])}

## Wall-clock per step (seconds, this machine)

{seconds}
""")


if __name__ == "__main__":
    main()
