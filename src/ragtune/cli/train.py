from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ragtune.cli.common import (
    CollectionOpt,
    HomeOpt,
    JsonOpt,
    print_json,
    progress_bars,
)

# Options every training command shares.
EpochsOpt = Annotated[float, typer.Option(help="passes over the training data")]
MaxStepsOpt = Annotated[int, typer.Option(help="> 0 overrides epochs")]

app = typer.Typer(help="Train models on a collection's data.", no_args_is_help=True)
# Enough for a loss to compare within ~0.01, few enough that measuring it costs seconds, not minutes.
HELD_OUT_PARAGRAPHS = 200


@app.command()
def embedder(
    collection: CollectionOpt,
    name: Annotated[str, typer.Option("--name", help="synthetic set to train on")] = "default",
    method: Annotated[str, typer.Option(help="full | lora | query-adapter (a linear map on query embeddings; no re-embedding)")] = "full",
    epochs: EpochsOpt = 1.0,
    max_steps: MaxStepsOpt = -1,
    batch_size: Annotated[int, typer.Option()] = 32,
    learning_rate: Annotated[Optional[float], typer.Option(help="default 2e-5 full, 2e-4 lora")] = None,
    num_negatives: Annotated[int, typer.Option(help="hard negatives per row (0: in-batch only)")] = 1,
    home: HomeOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Fine-tune the collection's embedder (MultipleNegativesRankingLoss, no-duplicates batches)
    into a new version of its model registry. Build a shadow index with it: `ragtune models shadow`."""
    from ragtune.cli.common import fail
    from ragtune.collection import Collection
    from ragtune.synth.negatives import training_rows
    from ragtune.train.embedder import EmbedderTrainConfig
    from ragtune.train.publish import publish_embedder

    if method not in ("full", "lora", "query-adapter"):
        fail(f"--method {method!r}: use full, lora or query-adapter")
    with Collection.open(home, collection) as coll:
        folder = coll.dir / "synth" / name
        if not (folder / "qrels" / "train.tsv").exists():
            fail(f"no filtered synthetic set at {folder}; run `ragtune synth queries` and `ragtune synth filter` first")
        rows = training_rows(folder, "train", num_negatives)
        config = EmbedderTrainConfig(method=method,  # type: ignore[arg-type]  # checked above
                                     epochs=epochs, max_steps=max_steps, batch_size=batch_size,
                                     learning_rate=learning_rate)
        meta, result = publish_embedder(home, coll, rows, config, data=str(folder))
    version = meta["version"]
    if json_:
        print_json(meta)
    else:
        typer.echo(f"embedder {version}: {len(rows)} rows, {result.steps} steps, loss {result.train_loss:.4f}, "
                   f"{result.seconds:.0f}s → {meta['path']}\nnext: ragtune models shadow -c {collection} --model {version}")


@app.command()
def reranker(
    collection: CollectionOpt,
    name: Annotated[str, typer.Option("--name", help="synthetic set to train on (with mined negatives)")] = "default",
    base: Annotated[str, typer.Option(help="encoder to start from, or a trained CrossEncoder (skips --squad)")] = "all-MiniLM-L6-v2",
    squad: Annotated[Optional[Path], typer.Option("--squad", help="SQuAD-format file for stage 1 (generic relevance) first")] = None,
    squad_steps: Annotated[int, typer.Option(help="stage-1 steps (checkpointed; a re-run resumes)")] = 1500,
    epochs: EpochsOpt = 1.0,
    max_steps: MaxStepsOpt = -1,
    batch_size: Annotated[int, typer.Option()] = 16,
    num_negatives: Annotated[int, typer.Option(help="negatives per question")] = 3,
    depth: Annotated[int, typer.Option(help="candidates the reranker rescores (gate and rerank stage)")] = 50,
    apply: Annotated[bool, typer.Option("--apply", help="use it in the collection's rerank stage if it passes the gate")] = False,
    home: HomeOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Train a cross-encoder reranker (from a plain encoder: no pretrained reranker is needed) on the
    synthetic questions and their hard negatives, into the collection's model registry. It is
    compared with no reranking on the held-out synthetic questions (paired test); --apply switches
    the rerank stage on only when it wins."""
    from ragtune.adapt import train_gated_reranker
    from ragtune.collection import Collection
    from ragtune.train.reranker import RerankerTrainConfig

    config = RerankerTrainConfig(epochs=epochs, max_steps=max_steps, batch_size=batch_size)
    with Collection.open(home, collection) as coll, progress_bars(disable=json_) as on_progress:
        out = train_gated_reranker(coll, home, coll.dir / "synth" / name, config, base, num_negatives, depth,
                                   squad=squad, squad_config=RerankerTrainConfig(max_steps=squad_steps, batch_size=batch_size),
                                   apply=apply, on_progress=on_progress)
    if json_:
        print_json(out)
        return
    g = out["gate"]
    verdict = (f"held-out MRR {g['mrr_before']:.3f} → {g['mrr_after']:.3f} (Δ {g['delta']:+.3f}, p = {g['p_value']:.4f}, "
               f"{g['queries']} questions, {g['ms_per_query']:.0f} ms/question at depth {g['depth']}; "
               f"first-stage weight {g.get('first_stage_weight', 0.0):g})")
    typer.echo(f"reranker {out['version']}: {out['rows']} questions, {out['steps']} steps, loss {out['train_loss']:.4f} "
               f"→ {out['path']}\n{verdict}")
    if out["applied"]:
        typer.echo("it wins: the collection's rerank stage now uses it")
    elif out["verdict"]["promote"]:
        typer.echo(f"it wins: use it with --set reranker.model={out['path']} "
                   f"--set reranker.first_stage_weight={g.get('first_stage_weight', 0.0):g} (or re-run with --apply)")
    else:
        typer.echo(f"the rerank stage stays off: {out['verdict']['why']}")


@app.command()
def qgen(
    squad: Annotated[str, typer.Option("--squad", help="SQuAD-format file of (context, question) pairs")],
    name: Annotated[str, typer.Option("--name", help="adapter name")] = "qgen",
    base: Annotated[str, typer.Option(help="local LLM to adapt")] = "SmolLM2-135M-Instruct",
    limit: Annotated[Optional[int], typer.Option(help="train on this many paragraphs (one query each); default all")] = None,
    types: Annotated[str, typer.Option("--types", help="query kinds it learns, in turn over the paragraphs")] =
        "question,claim,keywords",
    option: Annotated[Optional[list[str]], typer.Option(
        "--option", help="a LoRA option KEY=VALUE (repeatable), e.g. r=8 or top_layers=10")] = None,
    held_out: Annotated[float, typer.Option(
        help="share of the articles held out to measure the loss before, during and after training "
             f"(at most {HELD_OUT_PARAGRAPHS} of their paragraphs)")] = 0.05,
    eval_every: Annotated[int, typer.Option(help="steps between held-out loss measurements (0: before and after only)")] = 0,
    checkpoint_dir: Annotated[Optional[Path], typer.Option(
        help="checkpoint here; run the same command again to resume where it stopped")] = None,
    checkpoint_every: Annotated[int, typer.Option(help="steps between checkpoints (with --checkpoint-dir)")] = 50,
    epochs: EpochsOpt = 1.0,
    max_steps: MaxStepsOpt = -1,
    batch_size: Annotated[int, typer.Option()] = 8,
    overwrite: Annotated[bool, typer.Option("--overwrite")] = False,
    home: HomeOpt = None,
    json_: JsonOpt = False,
) -> None:
    """LoRA-tune the local LLM to write the queries a passage answers — questions, claims, keyword
    queries, each from SQuAD pairs — as a named adapter for `ragtune synth queries --set
    generator.adapter=NAME`."""
    from ragtune.cli.common import fail
    from ragtune.data.squad import load_squad, split_by_article
    from ragtune.synth.queries import qg_training_examples
    from ragtune.synth.query_types import parse_types
    from ragtune.train.generator import GeneratorTrainConfig
    from ragtune.train.publish import publish_adapter

    if not 0 <= held_out < 1:
        fail(f"--held-out must be at least 0 and below 1 (a share of the articles), not {held_out}")
    try:
        kinds = parse_types(types)
        qa = load_squad(squad)
        train_qa, held_qa = split_by_article(qa, held_out) if held_out > 0 else (qa, [])
        examples = qg_training_examples(train_qa, limit, types=kinds)
        eval_rows = qg_training_examples(held_qa, HELD_OUT_PARAGRAPHS, types=kinds)
        config = GeneratorTrainConfig(epochs=epochs, max_steps=max_steps, batch_size=batch_size,
                                      options=dict(_key_value(o) for o in option or []), eval_every=eval_every,
                                      checkpoint_every=checkpoint_every)
    except ValueError as e:
        fail(str(e))
    meta, result = publish_adapter(home, name, base, examples, config, task="question generation", data=str(squad),
                                   overwrite=overwrite, eval_rows=eval_rows, checkpoint_dir=checkpoint_dir,
                                   examples=len(examples), held_out_examples=len(eval_rows))
    if json_:
        print_json(meta)
    else:
        held = (f", held-out loss ({len(eval_rows)} paragraphs) {result.metrics['eval_loss_before']:.3f} → "
                f"{result.metrics['eval_loss_after']:.3f}" if "eval_loss_after" in result.metrics else "")
        resumed = f" (resumed from {result.metrics['resumed_from']})" if "resumed_from" in result.metrics else ""
        typer.echo(f"adapter {name}: {len(examples)} examples, {result.steps} steps{resumed}, loss "
                   f"{result.train_loss:.4f}{held}, {result.seconds:.0f}s, {meta['size_bytes'] / 1e6:.1f} MB → "
                   f"{meta['path']}")


@app.command()
def generator(
    collection: CollectionOpt,
    data: Annotated[Path, typer.Option("--data", help="SQuAD-format .json (COVID-QA, SQuAD, `synth answers`) or prompt/completion .jsonl")],
    name: Annotated[str, typer.Option("--name", help="adapter name")],
    method: Annotated[str, typer.Option(help="lora | qlora | ia3 | prompt-tuning | p-tuning | prefix | full")] = "lora",
    option: Annotated[Optional[list[str]], typer.Option("--option", help="a method option KEY=VALUE, e.g. r=8 (repeatable)")] = None,
    base: Annotated[Optional[str], typer.Option(help="model to tune (default: the collection's generator.model)")] = None,
    limit: Annotated[Optional[int], typer.Option(help="use this many questions (a seeded sample)")] = None,
    eval_fraction: Annotated[float, typer.Option(help="articles held out to measure the loss before/after")] = 0.1,
    unanswerable_fraction: Annotated[float, typer.Option(help="questions shown without their context, taught to say I don't know")] = 0.15,
    epochs: EpochsOpt = 1.0,
    max_steps: MaxStepsOpt = -1,
    batch_size: Annotated[int, typer.Option()] = 8,
    learning_rate: Annotated[Optional[float], typer.Option(help="default: the method's own")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite")] = False,
    scope: Annotated[Optional[list[str]], typer.Option(
        "--scope", help="retrieve training passages these ACL tokens may read (repeatable); default public")] = None,
    public_data: Annotated[bool, typer.Option(
        "--public-data", help="--data is public text (it has no .scope.json from `synth answers`)")] = False,
    home: HomeOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Fine-tune the answering LLM on RAG-shaped examples: each question with the passages the
    collection's retrieval really returns (gold passage among distractors; some withheld → "I
    don't know"), target the short answer with its citation. The SQuAD file's contexts are indexed
    into the collection first (incremental). Saves a named adapter: `ragtune ask --adapter NAME`."""
    from ragtune.cli.common import fail
    from ragtune.collection import Collection
    from ragtune.models.adapters import AdapterRegistry
    from ragtune.synth.scope import read_scope
    from ragtune.synth.sft import sft_rows_from_file
    from ragtune.train.generator import GeneratorTrainConfig
    from ragtune.train.methods import get_method
    from ragtune.train.publish import publish_adapter
    from ragtune.types import Scope

    options = dict(_key_value(o) for o in option or [])
    try:
        get_method(method).make_options(options)
    except ValueError as e:
        fail(str(e))
    if AdapterRegistry(home).exists(name) and not overwrite:
        fail(f"adapter {name!r} exists; pick another --name or pass --overwrite")
    file_scope = read_scope(data) or (Scope.of([["public"]]) if public_data else None)
    with Collection.open(home, collection) as coll, progress_bars(disable=json_) as on_progress:
        base = base or coll.pipeline.generator.model
        # Restricted data retrieves within its own readers' view (its contexts are indexed for them).
        own = file_scope.readers_acl() if file_scope is not None and not file_scope.public else None
        with coll.scoped(scope or (own.tokens() if own else ["public"])) as view:  # distractors come from here too
            train_rows, eval_rows, data_info = sft_rows_from_file(view, data, base, limit, eval_fraction,
                                                                  unanswerable_fraction, home, on_progress)
            # Served only to principals who may read the data file and every passage retrieval could show.
            adapter_scope = None if file_scope is None else Scope.of([*file_scope.acls, *view.data_scope().acls])
    config = GeneratorTrainConfig(method=method, options=options, epochs=epochs, max_steps=max_steps,
                                  batch_size=batch_size, learning_rate=learning_rate)
    meta, result = publish_adapter(home, name, base, train_rows, config, task="grounded answering", data=str(data),
                                   overwrite=overwrite, eval_rows=eval_rows,
                                   scope=adapter_scope.to_list() if adapter_scope else None, **data_info)
    if json_:
        print_json(meta)
        return
    held = (f", held-out loss {result.metrics['eval_loss_before']:.3f} → {result.metrics['eval_loss_after']:.3f}"
            if "eval_loss_after" in result.metrics else "")
    typer.echo(f"adapter {name} ({method}): {len(train_rows)} examples, {result.steps} steps, loss {result.train_loss:.4f}"
               f"{held}, {result.seconds:.0f}s, {result.trainable_parameters:,} trainable parameters, "
               f"{meta['size_bytes'] / 1e6:.2f} MB\nuse it: ragtune ask -c {collection} --adapter {name} \"...\"")


@app.command()
def preferences(
    collection: CollectionOpt,
    data: Annotated[Path, typer.Option("--data", help="preferences.jsonl (DPO: prompt, chosen, rejected) or kto.jsonl "
                                                       "(KTO: prompt, completion, label) from `ragtune feedback export`")],
    name: Annotated[str, typer.Option("--name", help="adapter name")],
    objective: Annotated[str, typer.Option(help="dpo (pairs) | kto (answers rated up/down)")] = "dpo",
    method: Annotated[str, typer.Option(help="lora | qlora | ia3 | prompt-tuning | p-tuning | prefix | full")] = "lora",
    option: Annotated[Optional[list[str]], typer.Option("--option", help="a method option KEY=VALUE (repeatable)")] = None,
    eval_data: Annotated[Optional[Path], typer.Option(
        help="held-out pairs (prompt, chosen, rejected): preference accuracy before/after; default: the newest "
             "--eval-fraction of --data when it holds pairs")] = None,
    eval_fraction: Annotated[float, typer.Option(help="newest share of --data pairs held out when --eval-data is not given")] = 0.2,
    base: Annotated[Optional[str], typer.Option(help="model to tune (default: the collection's generator.model)")] = None,
    beta: Annotated[float, typer.Option(help="KL weight: how far from the base the policy may move")] = 0.1,
    sft_weight: Annotated[float, typer.Option(
        help="DPO: weight of a language-modelling loss on the chosen answers (RPO); 0: plain DPO")] = 1.0,
    epochs: EpochsOpt = 1.0,
    max_steps: MaxStepsOpt = -1,
    batch_size: Annotated[int, typer.Option()] = 4,
    learning_rate: Annotated[Optional[float], typer.Option(help="default: a quarter of the method's SFT rate")] = None,
    max_length: Annotated[int, typer.Option(
        help="tokens per prompt + answer; a row's passages are cut to fit, those its answers quote kept first")] = 1024,
    overwrite: Annotated[bool, typer.Option("--overwrite")] = False,
    home: HomeOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Preference-tune the answering LLM with DPO or KTO (trl) on top of a PEFT method, from users'
    feedback. The passages in the rows come from the collection, so the adapter is served only to
    principals who may read everything the collection holds. Saves a named adapter; with held-out
    pairs, one whose preference accuracy does not rise significantly is kept but refused (not served)."""
    from ragtune.cli.common import fail
    from ragtune.collection import Collection
    from ragtune.data.beir import iter_jsonl
    from ragtune.evaluate.preference import preference_gate
    from ragtune.models.adapters import AdapterRegistry
    from ragtune.train.preference import PreferenceTrainConfig, split_by_time
    from ragtune.train.publish import publish_preference_adapter

    if not data.is_file():
        fail(f"--data {data}: no such file; write one with `ragtune feedback export --out DIR`")
    if AdapterRegistry(home).exists(name) and not overwrite:
        fail(f"adapter {name!r} exists; pick another --name or pass --overwrite")
    rows = list(iter_jsonl(data))
    if eval_data is not None:
        held = list(iter_jsonl(eval_data))
    elif objective == "dpo":
        rows, held = split_by_time(rows, eval_fraction)
    else:
        held = []
    try:
        config = PreferenceTrainConfig(objective=objective, method=method,  # type: ignore[arg-type]
                                       options=dict(_key_value(o) for o in option or []), beta=beta,
                                       sft_weight=sft_weight, epochs=epochs,
                                       max_steps=max_steps, batch_size=batch_size, learning_rate=learning_rate,
                                       max_length=max_length)
    except ValueError as e:
        fail(str(e))
    with Collection.open(home, collection) as coll:
        base = base or coll.pipeline.generator.model
        scope = coll.data_scope()
    meta, result = publish_preference_adapter(home, name, base, rows, config, data=str(data), overwrite=overwrite,
                                              eval_pairs=held, gate=preference_gate, scope=scope.to_list(),
                                              collection=collection)
    if json_:
        print_json(meta)
        return
    m: dict[str, Any] = dict(result.metrics)
    held_txt = (f", held-out margin {m['before']['margin']:+.2f} → {m['after']['margin']:+.2f}" if "after" in m else "")
    dropped = f", {m['rows_too_long']} rows too long for --max-length left out" if m.get("rows_too_long") else ""
    typer.echo(f"adapter {name} ({objective} on {method}): {len(rows)} rows{dropped}, {result.steps} steps, "
               f"loss {result.train_loss:.4f}{held_txt}, {result.seconds:.0f}s")
    gate = meta.get("gate")
    if gate and not gate["promote"]:
        typer.echo(f"refused: {gate['why']}. Kept for inspection (`ragtune adapters show {name}`), not served.")
    else:
        typer.echo((f"gate: {gate['why']}\n" if gate else "") +
                   f"use it: ragtune ask -c {collection} --adapter {name} \"...\"")


def _key_value(text: str) -> tuple[str, str]:
    from ragtune.cli.common import fail

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        fail(f"--option {text!r}: write KEY=VALUE, e.g. --option r=8")
    return key.strip(), value.strip()


@app.command()
def reader(
    collection: CollectionOpt,
    data: Annotated[list[Path], typer.Option("--data", help="SQuAD-format .json (repeatable: e.g. SQuAD + your own)")],
    base: Annotated[str, typer.Option(help="encoder to put the span head on, or a trained reader to continue")] = "all-MiniLM-L6-v2",
    limit: Annotated[Optional[int], typer.Option(help="questions per file (a seeded sample)")] = None,
    epochs: EpochsOpt = 2.0,
    max_steps: MaxStepsOpt = -1,
    batch_size: Annotated[int, typer.Option()] = 16,
    eval_fraction: Annotated[float, typer.Option(help="articles held out: the learning curve and the gate")] = 0.1,
    eval_every: Annotated[int, typer.Option(help="steps between held-out measurements (0: before and after only)")] = 0,
    checkpoint_dir: Annotated[Optional[Path], typer.Option(help="checkpoint here; re-run to resume")] = None,
    apply: Annotated[bool, typer.Option("--apply", help="make it the collection's reader if it beats the current one")] = False,
    public_data: Annotated[bool, typer.Option(
        "--public-data", help="a --data file without a .scope.json (e.g. SQuAD) is public text")] = False,
    retrieved: Annotated[int, typer.Option(
        "--retrieved", help="also train each question over the top K chunks the collection's search returns for it "
        "(answer-bearing ones labelled, the others \"no answer\"): how the reader meets questions at answer time; "
        "0 = off")] = 0,
    home: HomeOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Train the extractive reader (span prediction) into the collection's model registry, then
    gate it: on held-out articles it must beat the collection's current reader (the sentence
    baseline until one is applied) by a paired test on F1. With --apply a reader that passes
    becomes the collection's reader; one that does not is kept in the registry, not used.
    The collection's reader answers every reader of the collection, so --apply also needs all
    of them to be allowed the training text: a `synth answers` file records its scope, and any
    other file counts as public only with --public-data."""
    from ragtune.adapt import train_gated_reader
    from ragtune.cli.common import fail, progress_bars
    from ragtune.collection import Collection
    from ragtune.data.squad import QAExample, load_squad, sample, split_by_article
    from ragtune.synth.scope import read_scope
    from ragtune.train.reader import ReaderTrainConfig
    from ragtune.types import Scope

    examples = []
    for path in data:
        if not path.is_file():
            fail(f"--data {path}: no such file")
        examples += sample(load_squad(path), limit)
    scopes = [read_scope(p) or (Scope.of([["public"]]) if public_data else None) for p in data]
    # Unknown provenance (a file with no scope record, not declared public): admins only.
    scope = None if None in scopes else Scope.of([acl for s in scopes if s is not None for acl in s.acls])
    if len({ex.article_id for ex in examples}) < 2:
        fail("--data: need questions from at least two articles (one is held out to gate the reader)")
    train_ex, held = split_by_article(examples, eval_fraction)
    config = ReaderTrainConfig(epochs=epochs, max_steps=max_steps, batch_size=batch_size, eval_every=eval_every)
    questions = len(train_ex)
    extra: list[QAExample] = []
    with Collection.open(home, collection) as coll, progress_bars(json_) as on_progress:
        if retrieved:
            from ragtune.synth.reader_contexts import retrieved_contexts

            extra, chunks_scope = retrieved_contexts(coll, train_ex, k=retrieved, on_progress=on_progress)
            train_ex = train_ex + extra
            # the chunks' text is training text too: the reader's scope narrows to who may read them
            scope = None if scope is None else Scope.of([*scope.acls, *chunks_scope.acls])
        out = train_gated_reader(coll, home, train_ex, held, config, base, [str(p) for p in data], scope, apply,
                                 bool(eval_every), checkpoint_dir, on_progress)
    gate, applied, refused, version, model_path = (out["gate"], out["applied"], out.get("refused"), out["version"],
                                                   out["path"])
    if json_:
        print_json({k: v for k, v in out.items() if k not in ("questions", "windows", "steps", "train_loss", "seconds", "previous")})
        return
    over = f" (+ {len(extra)} over retrieved chunks)" if retrieved else ""
    typer.echo(f"reader {version}: {questions} questions{over} → {out['windows']} windows, {out['steps']} steps, "
               f"loss {out['train_loss']:.4f}, {out['seconds']:.0f}s → {model_path}")
    typer.echo(f"gate on {gate['questions']} held-out questions: F1 {gate['baseline_scores']['F1']:.3f} ({gate['baseline']}) → "
               f"{gate['candidate_scores']['F1']:.3f}, p = {gate['p_value']:.4f}, {gate['ms_per_question']:.0f} ms/question → "
               + ("better" if gate["enable"] else "not better"))
    if applied:
        typer.echo("the collection now answers extractively with it")
    elif refused:
        typer.echo(f"not applied: {refused} (kept in the registry)")
    elif apply:
        typer.echo("not applied: it does not beat the current reader (kept in the registry: `ragtune models list`)")
    elif gate["enable"]:
        typer.echo(f"use it: re-run with --apply, or --set reader.model={model_path}")


@app.command()
def rag(
    collection: CollectionOpt,
    data: Annotated[Path, typer.Option("--data", help="SQuAD-format .json of (context, question, answer): COVID-QA, SQuAD, `synth answers`")],
    variant: Annotated[str, typer.Option(help="e2e (both, marginal likelihood) | retriever | generator | dalm (gold passage only)")] = "e2e",
    name: Annotated[Optional[str], typer.Option("--name", help="generator adapter name (default rag-<variant>)")] = None,
    k: Annotated[int, typer.Option("-k", help="passages marginalised over per question")] = 4,
    temperature: Annotated[float, typer.Option(help="τ of p(z|q) = softmax(cosine / τ)")] = 0.05,
    contrastive_weight: Annotated[float, typer.Option(help="e2e: weight of the gold-chunk contrastive term")] = 1.0,
    retriever_method: Annotated[str, typer.Option(help="full | lora (merged when saved)")] = "full",
    refresh_every: Annotated[int, typer.Option(help="re-encode the passages every N steps (0: only at the end)")] = 0,
    limit: Annotated[Optional[int], typer.Option(help="use this many questions (a seeded sample)")] = None,
    epochs: EpochsOpt = 1.0,
    max_steps: MaxStepsOpt = -1,
    batch_size: Annotated[int, typer.Option()] = 4,
    retriever_lr: Annotated[float, typer.Option()] = 2e-5,
    generator_lr: Annotated[float, typer.Option()] = 2e-4,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace an adapter of the same name")] = False,
    home: HomeOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Train retriever and generator together on (question, answer) pairs with the RAG-Sequence
    marginal likelihood (or one of the baselines: --variant retriever | generator | dalm). The
    file's contexts are indexed into the collection first (incremental). Saves a new embedder
    version with its re-indexed shadow index version (compare / promote with `ragtune models`)
    and a generator adapter (`ragtune ask --adapter NAME`)."""
    from ragtune.cli.common import fail
    from ragtune.collection import Collection
    from ragtune.data.squad import load_squad, sample
    from ragtune.ingest.datasets import index_contexts
    from ragtune.models.adapters import AdapterRegistry
    from ragtune.train.rag import RagTrainConfig, rag_examples, train_rag

    if not data.is_file():
        fail(f"--data {data}: no such file")
    try:
        # variant / retriever_method are strings here: RagTrainConfig checks them (a clear error).
        config = RagTrainConfig(variant=variant, k=k, temperature=temperature,  # type: ignore[arg-type]
                                contrastive_weight=contrastive_weight,
                                retriever_method=retriever_method, refresh_every=refresh_every, epochs=epochs,  # type: ignore[arg-type]
                                max_steps=max_steps, batch_size=batch_size, retriever_lr=retriever_lr,
                                generator_lr=generator_lr)
        examples = sample(load_squad(data), limit)
    except ValueError as e:
        fail(str(e))
    name = name or f"rag-{variant}"
    if config.trains_generator and AdapterRegistry(home).exists(name) and not overwrite:
        fail(f"adapter {name!r} exists; pick another --name or pass --overwrite")
    with Collection.open(home, collection) as coll, progress_bars(disable=json_) as on_progress:
        index_contexts(coll, examples, data.stem, home, on_progress)
        triples, skipped = rag_examples(coll, examples)
        if not triples:
            fail(f"{data}: no answerable question whose answer lies in a chunk of {collection!r}")
        result = train_rag(coll, triples, config, home, on_progress=on_progress)
        saved = result.save(coll, name, home, overwrite, {"data": str(data), "examples": len(triples),
                                                           "skipped": skipped})
    report = {**saved, "variant": variant, "examples": len(triples), "skipped": skipped, "steps": result.steps,
              "train_loss": result.train_loss, "seconds": round(result.seconds, 1), "loss_parts": result.parts}
    if json_:
        print_json(report)
        return
    lines = [f"rag {variant}: {len(triples)} questions ({skipped} skipped), {result.steps} steps, "
             f"loss {result.train_loss:.4f}, {result.seconds:.0f}s"]
    if saved["index_version"]:
        lines.append(f"retriever: embedder {saved['embedder_version']}, index version {saved['index_version']} "
                     f"(re-indexed {result.index.refreshes}×) → ragtune models compare -c {collection} "
                     f"--version {saved['index_version']}; ragtune models promote -c {collection} --version {saved['index_version']}")
    if saved["adapter"]:
        lines.append(f"generator: adapter {saved['adapter']} → ragtune ask -c {collection} --adapter {saved['adapter']} \"...\"")
    typer.echo("\n".join(lines))
