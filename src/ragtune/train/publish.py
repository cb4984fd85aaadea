"""Train and publish: one call per artefact, the trained model written into its registry with
what made it (base, data, hyper-parameters, steps, loss, time, size) — what the CLI, the adaptation
loop and the server all call, so none of them repeats train → registry → describe.

Each returns ``(meta, result)``: the registry entry as ``meta.json`` holds it, and the
:class:`~ragtune.train.embedder.TrainResult` (steps, loss, seconds, held-out metrics).

Example:
    >>> from ragtune.train.publish import publish_embedder
    >>> meta, result = publish_embedder(home, collection, rows, EmbedderTrainConfig(), data="synth/default")  # doctest: +SKIP
    >>> meta["version"], meta["path"]  # doctest: +SKIP
    ('v2', '.ragtune/models/embedder/handbook/v2')
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ragtune.collection import Collection
from ragtune.models.adapters import AdapterRegistry
from ragtune.models.registry import ModelRegistry
from ragtune.train.embedder import EmbedderTrainConfig, TrainResult
from ragtune.train.generator import GeneratorTrainConfig
from ragtune.train.preference import PreferenceTrainConfig
from ragtune.train.reader import ReaderTrainConfig
from ragtune.train.reranker import RerankerTrainConfig

Published = tuple[dict[str, Any], TrainResult]


def result_fields(result: TrainResult) -> dict[str, Any]:
    """What every registry entry records about its training run."""
    return {"steps": result.steps, "train_loss": result.train_loss, **result.metrics,
            "train_seconds": round(result.seconds, 1), "trainable_parameters": result.trainable_parameters,
            "total_parameters": result.total_parameters}


def _new_version(home: str | Path | None, kind: str, collection: Collection,
                 train: Callable[[Path], TrainResult], scope: list[list[str]] | None = None,
                 **describe: Any) -> Published:
    registry = ModelRegistry(home, kind, collection.name)
    # A scoped handle (Collection.scoped) trained on part of the collection: record whose text it is.
    if scope is None and collection.data_tokens is not None:
        scope = collection.data_scope().to_list()
    with registry.new_version() as (version, out):
        result = train(out)
        registry.describe(out, **describe, scope=scope, **result_fields(result))
    return registry.get(version), result


def publish_embedder(home: str | Path | None, collection: Collection, rows: list[dict[str, str]],
                     config: EmbedderTrainConfig, data: str) -> Published:
    """Fine-tune the collection's embedder into a new version of its embedder registry."""
    from ragtune.train.embedder import train_embedder

    base, device = collection.pipeline.embedder.model, collection.pipeline.embedder.device
    return _new_version(home, "embedder", collection, lambda out: train_embedder(base, rows, out, config, device),
                        base=base, method=config.method, data=data, rows=len(rows), hyperparameters=config.to_dict())


def publish_reranker(home: str | Path | None, collection: Collection, rows: list[dict[str, str]],
                     config: RerankerTrainConfig, base: str, data: str) -> Published:
    """Train a cross-encoder from ``base`` into a new version of the collection's reranker registry."""
    from ragtune.train.reranker import train_reranker

    device = collection.pipeline.embedder.device
    return _new_version(home, "reranker", collection, lambda out: train_reranker(base, rows, out, config, device),
                        base=base, method="cross-encoder", data=data, rows=len(rows), hyperparameters=config.to_dict())


def publish_reader(home: str | Path | None, collection: Collection, examples: list, config: ReaderTrainConfig,
                   base: str, data: list[str], evaluate: Callable | None = None, checkpoint_dir: Path | None = None,
                   on_progress: Callable[[str, int, int], None] | None = None,
                   scope: list[list[str]] | None = None) -> Published:
    """Train the extractive span reader into a new version of the collection's reader registry
    (``evaluate`` / ``checkpoint_dir``: the learning curve and resuming, as ``train_reader``;
    ``scope``: whose text the training files hold, recorded on the version)."""
    from ragtune.train.reader import train_reader

    device = collection.pipeline.reader.device
    return _new_version(home, "reader", collection, lambda out: train_reader(
        base, examples, out, config, device, evaluate=evaluate, checkpoint_dir=checkpoint_dir, on_progress=on_progress),
                        scope=scope, base=base, method="span-prediction", data=data, questions=len(examples),
                        hyperparameters=config.to_dict())


def publish_adapter(home: str | Path | None, name: str, base: str, rows: list[dict], config: GeneratorTrainConfig,
                    task: str, data: str, overwrite: bool = False, eval_rows: list[dict] | None = None,
                    checkpoint_dir: str | Path | None = None, **info: Any) -> Published:
    """Fine-tune the local LLM with ``config.method`` into the named adapter (``ragtune ask --adapter``);
    ``checkpoint_dir`` makes the run resumable (see :func:`ragtune.train.generator.train_generator`)."""
    from ragtune.train.generator import train_generator

    registry = AdapterRegistry(home)
    with registry.create(name, overwrite=overwrite) as out:
        result = train_generator(base, rows, out, config, home, eval_examples=eval_rows or None,
                                 checkpoint_dir=checkpoint_dir)
        registry.describe(out, base=base, method=config.method, task=task, data=data, **info,
                          hyperparameters=config.to_dict(), **result_fields(result))
    return registry.get(name), result


def publish_preference_adapter(home: str | Path | None, name: str, base: str, rows: list[dict],
                               config: PreferenceTrainConfig, data: str, overwrite: bool = False,
                               eval_pairs: list[dict] | None = None,
                               gate: Callable[[list[float], list[float]], dict[str, Any]] | None = None,
                               **info: Any) -> Published:
    """Preference-tune the local LLM (DPO/KTO on ``config.method``) into the named adapter. With
    held-out pairs and a ``gate`` (margins before, margins after → verdict with ``promote``), the
    verdict is recorded and an adapter it refuses is kept for inspection but not served
    (:meth:`~ragtune.models.adapters.AdapterRegistry.refusal`)."""
    from ragtune.train.preference import train_preferences

    registry = AdapterRegistry(home)
    with registry.create(name, overwrite=overwrite) as out:
        result = train_preferences(base, rows, out, config, home, eval_pairs=eval_pairs or None)
        metrics: dict[str, Any] = result.metrics  # before/after are dicts here, with each pair's margin
        margins = {k: metrics[k].pop("margins") for k in ("before", "after") if k in metrics}
        if gate is not None and len(margins) == 2:
            info["gate"] = gate(margins["before"], margins["after"])
        # the objective comes once, in the result's metrics (result_fields)
        registry.describe(out, base=base, method=config.method,
                          task=f"preference tuning ({config.objective})", data=data, **info,
                          hyperparameters=config.to_dict(), **result_fields(result))
    return registry.get(name), result
