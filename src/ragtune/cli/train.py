from __future__ import annotations

from typing import Annotated, Optional

import typer

from ragtune.cli.common import CollectionOpt, HomeOpt, JsonOpt, print_json

# Options every training command shares.
EpochsOpt = Annotated[float, typer.Option(help="passes over the training data")]
MaxStepsOpt = Annotated[int, typer.Option(help="> 0 overrides epochs")]

app = typer.Typer(help="Train models on a collection's data.", no_args_is_help=True)


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
    from ragtune.models.registry import ModelRegistry
    from ragtune.synth.negatives import training_rows
    from ragtune.train.embedder import EmbedderTrainConfig, train_embedder

    if method not in ("full", "lora", "query-adapter"):
        fail(f"--method {method!r}: use full, lora or query-adapter")
    with Collection.open(home, collection) as coll:
        folder = coll.dir / "synth" / name
        if not (folder / "qrels" / "train.tsv").exists():
            fail(f"no filtered synthetic set at {folder}; run `ragtune synth queries` and `ragtune synth filter` first")
        rows = training_rows(folder, "train", num_negatives)
        config = EmbedderTrainConfig(method=method, epochs=epochs, max_steps=max_steps, batch_size=batch_size,
                                     learning_rate=learning_rate)
        registry = ModelRegistry(home, "embedder", collection)
        base = coll.pipeline.embedder.model
        with registry.new_version() as (version, out):
            result = train_embedder(base, rows, out, config, coll.pipeline.embedder.device)
            registry.describe(out, base=base, method=method, data=str(folder), rows=len(rows),
                              hyperparameters=config.to_dict(), steps=result.steps, train_loss=result.train_loss,
                              train_seconds=round(result.seconds, 1), trainable_parameters=result.trainable_parameters)
    meta = registry.get(version)
    if json_:
        print_json(meta)
    else:
        typer.echo(f"embedder {version}: {len(rows)} rows, {result.steps} steps, loss {result.train_loss:.4f}, "
                   f"{result.seconds:.0f}s → {meta['path']}\nnext: ragtune models shadow -c {collection} --model {version}")


@app.command()
def reranker(
    collection: CollectionOpt,
    name: Annotated[str, typer.Option("--name", help="synthetic set to train on (with mined negatives)")] = "default",
    base: Annotated[str, typer.Option(help="encoder to start from")] = "all-MiniLM-L6-v2",
    epochs: EpochsOpt = 1.0,
    max_steps: MaxStepsOpt = -1,
    batch_size: Annotated[int, typer.Option()] = 16,
    num_negatives: Annotated[int, typer.Option(help="negatives per question")] = 3,
    depth: Annotated[int, typer.Option(help="with --apply: candidates the reranker rescores")] = 50,
    apply: Annotated[bool, typer.Option("--apply", help="use it in the collection's rerank stage")] = False,
    home: HomeOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Train a cross-encoder reranker (from a plain encoder: no pretrained reranker is needed) on the
    synthetic questions and their hard negatives, into the collection's model registry."""
    from ragtune.cli.common import fail
    from ragtune.collection import Collection
    from ragtune.models.registry import ModelRegistry
    from ragtune.synth.negatives import training_rows
    from ragtune.train.reranker import RerankerTrainConfig, train_reranker

    with Collection.open(home, collection) as coll:
        folder = coll.dir / "synth" / name
        if not (folder / "negatives.train.jsonl").exists():
            fail(f"no mined negatives at {folder}; run `ragtune synth negatives -c {collection}` first")
        rows = training_rows(folder, "train", num_negatives, ragged=True)
        config = RerankerTrainConfig(epochs=epochs, max_steps=max_steps, batch_size=batch_size)
        registry = ModelRegistry(home, "reranker", collection)
        with registry.new_version() as (version, out):
            result = train_reranker(base, rows, out, config, coll.pipeline.embedder.device)
            registry.describe(out, base=base, method="cross-encoder", data=str(folder), rows=len(rows),
                              hyperparameters=config.to_dict(), steps=result.steps, train_loss=result.train_loss,
                              train_seconds=round(result.seconds, 1))
        path = str(registry.path(version))
        if apply:
            coll.pipeline.reranker.model = path
            coll.pipeline.reranker.depth = depth
            coll.pipeline.save(coll.dir / "pipeline.yaml")
    meta = registry.get(version)
    if json_:
        print_json({**meta, "applied": apply})
    else:
        typer.echo(f"reranker {version}: {len(rows)} questions, {result.steps} steps, loss {result.train_loss:.4f} → {path}"
                   + ("; now used by the collection's rerank stage" if apply else
                      f"\nuse it: --set reranker.model={path} (or re-run with --apply)"))



@app.command()
def qgen(
    squad: Annotated[str, typer.Option("--squad", help="SQuAD-format file of (context, question) pairs")],
    name: Annotated[str, typer.Option("--name", help="adapter name")] = "qgen",
    base: Annotated[str, typer.Option(help="local LLM to adapt")] = "SmolLM2-135M-Instruct",
    limit: Annotated[Optional[int], typer.Option(help="train on this many paragraphs (one question each)")] = 1000,
    epochs: EpochsOpt = 1.0,
    max_steps: MaxStepsOpt = -1,
    batch_size: Annotated[int, typer.Option()] = 8,
    overwrite: Annotated[bool, typer.Option("--overwrite")] = False,
    home: HomeOpt = None,
    json_: JsonOpt = False,
) -> None:
    """LoRA-tune the local LLM to write the question a passage answers (SQuAD pairs), as a named
    adapter for `ragtune synth queries --set generator.adapter=NAME`."""
    from ragtune.cli.common import fail
    from ragtune.evaluate.squad import load_squad
    from ragtune.models.adapters import AdapterRegistry
    from ragtune.synth.queries import qg_training_examples
    from ragtune.train.generator import GeneratorTrainConfig, train_generator

    try:
        examples = qg_training_examples(load_squad(squad), limit)
    except ValueError as e:
        fail(str(e))
    config = GeneratorTrainConfig(epochs=epochs, max_steps=max_steps, batch_size=batch_size)
    registry = AdapterRegistry(home)
    with registry.create(name, overwrite=overwrite) as out:
        result = train_generator(base, examples, out, config, home)
        registry.describe(out, base=base, method=config.method, task="question generation", data=str(squad),
                          examples=len(examples), hyperparameters=config.to_dict(), steps=result.steps,
                          train_loss=result.train_loss, train_seconds=round(result.seconds, 1),
                          trainable_parameters=result.trainable_parameters, total_parameters=result.total_parameters)
    meta = registry.get(name)
    if json_:
        print_json(meta)
    else:
        typer.echo(f"adapter {name}: {len(examples)} examples, {result.steps} steps, loss {result.train_loss:.4f}, "
                   f"{result.seconds:.0f}s, {meta['size_bytes'] / 1e6:.1f} MB → {meta['path']}")
