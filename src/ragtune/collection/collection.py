"""A collection: a named set of documents bound to one pipeline (as in NeMo Retriever:
pipelines → collections → documents → queries), with its manifest and index versions on disk.

Layout under ``RAGTUNE_HOME``::

    collections/<name>/pipeline.yaml     the pipeline this collection is bound to
    collections/<name>/manifest.sqlite   documents, hashes, ACLs, ingest runs
    collections/<name>/index/<version>/  store data; index/live names the promoted version
    collections/<name>/index/versions.json  per version: the embedder that made its vectors
    collections/<name>/index/history.jsonl  promotions and rollbacks, oldest first

Example:
    >>> import tempfile
    >>> from ragtune.collection import Collection
    >>> home = tempfile.mkdtemp()
    >>> with Collection.create(home, "handbook") as c:
    ...     c.name, c.live_version
    ('handbook', 'v1')
    >>> [c.name for c in Collection.list(home)]
    ['handbook']
"""

from __future__ import annotations

import builtins
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ragtune.collection.manifest import Manifest
from ragtune.collection.versions import IndexVersions
from ragtune.config import ConfigError, PipelineConfig, ragtune_home
from ragtune.errors import AlreadyExistsError, InputError, NotFoundError
from ragtune.index.base import Store, StoreBusyError
from ragtune.index.lock import OwnerLock
from ragtune.types import Scope

if TYPE_CHECKING:
    from ragtune.models.embedder import Embedder

# What an index is built with: fixed for the life of a collection (a new embedder means a new
# index version, built by `ragtune models shadow`).
BUILD_SECTIONS = ("embedder", "chunking", "store")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class CollectionNotFoundError(NotFoundError):
    pass


class Collection:
    """``version`` pins an index version (a shadow being evaluated); None follows ``index/live``."""

    def __init__(self, directory: Path, pipeline: PipelineConfig, version: str | None = None):
        self.dir = directory
        self.name = directory.name
        self.pipeline = pipeline
        self._version = version
        self._store: Store | None = None
        self._borrowed_store = False
        self._manifest: Manifest | None = None
        self._embedder: Embedder | None = None
        self.index_versions = IndexVersions(directory / "index")
        self.data_tokens: tuple[str, ...] | None = None  # set by scoped(): what training may read
        self._store_owner: Collection | None = None  # scoped(): the handle whose store this one uses

    def at_version(self, version: str) -> "Collection":
        """Another handle on this collection bound to index ``version`` (close it when done)."""
        known = self.index_versions.records()
        if not (self.dir / "index" / version).exists() and version not in known:
            raise NotFoundError(f"collection {self.name!r} has no index version {version!r}; it has {sorted(known)}")
        view = Collection(self.dir, self.pipeline.model_copy(deep=True), version)
        if self._store is not None and view.index_dir == self.index_dir:
            # Versions that share vectors (a query-side adapter) share one open store: a second
            # open would wait on the store's single-owner lock held by this very process.
            view._store, view._borrowed_store = self._store, True
        return view

    # -- lifecycle ------------------------------------------------------------------------------
    @classmethod
    def create(cls, home: str | Path | None, name: str, pipeline: PipelineConfig | None = None,
               exist_ok: bool = False) -> "Collection":
        directory = _collections_dir(home) / _checked_name(name)
        if (directory / "pipeline.yaml").exists():
            if not exist_ok:
                raise AlreadyExistsError(f"collection {name!r} already exists at {directory}")
            existing = cls.open(home, name)
            if pipeline is not None and pipeline.model_dump() != existing.pipeline.model_dump():
                # This handle only: a bound pipeline changes through `configure`, never as a side
                # effect of a command that happens to find the collection already there.
                _check_compatible(existing.pipeline, pipeline, name)
                existing.pipeline = pipeline
            return existing
        directory.mkdir(parents=True, exist_ok=True)
        pipeline = pipeline or PipelineConfig()
        pipeline.save(directory / "pipeline.yaml")
        collection = cls(directory, pipeline)
        collection.index_versions.set_live("v1")
        return collection

    @classmethod
    def for_call(cls, home: str | Path | None, name: str, overrides: builtins.list[str] | None = None,
                 base: PipelineConfig | None = None, create: bool = False) -> "Collection":
        """A handle whose pipeline is the bound one (or ``base``) with ``overrides`` applied for this
        call only; ``pipeline.yaml`` is not touched. With ``create``, a missing collection is
        created bound to what its index is built with (the embedder, chunking and store parts of
        ``base`` + ``overrides``); query and answer settings stay per call.

        >>> import tempfile
        >>> home = tempfile.mkdtemp()
        >>> with Collection.for_call(home, "kb", ["answer.mode=extractive", "chunking.chunk_size=128"], create=True) as c:
        ...     c.pipeline.answer.mode, c.pipeline.chunking.chunk_size
        ('extractive', 128)
        >>> with Collection.open(home, "kb") as c:  # only the build-time part was bound
        ...     c.pipeline.answer.mode, c.pipeline.chunking.chunk_size
        ('auto', 128)
        """
        if create and not cls.exists(home, name):
            wanted = (base or PipelineConfig()).with_overrides(overrides)
            bound = PipelineConfig().model_copy(update={s: getattr(wanted, s) for s in BUILD_SECTIONS})
            coll = cls.create(home, name, bound)
        else:
            coll = cls.open(home, name)
        per_call = (base or coll.pipeline).with_overrides(overrides)
        _check_compatible(coll.pipeline, per_call, name)
        coll.pipeline = per_call
        return coll

    def configure(self, overrides: builtins.list[str]) -> dict[str, tuple[Any, Any]]:
        """Change the collection's bound pipeline (``ragtune collections configure``); returns
        {field: (old, new)}. Settings its index was built with cannot change here."""
        new = self.pipeline.with_overrides(overrides)
        _check_compatible(self.pipeline, new, self.name)
        old_flat, new_flat = _flatten(self.pipeline.model_dump(mode="json")), _flatten(new.model_dump(mode="json"))
        changes = {k: (old_flat.get(k), v) for k, v in new_flat.items() if old_flat.get(k) != v}
        self.pipeline = new
        self.save_pipeline()
        return changes

    @classmethod
    def exists(cls, home: str | Path | None, name: str) -> bool:
        return (_collections_dir(home) / _checked_name(name) / "pipeline.yaml").exists()

    @classmethod
    def open(cls, home: str | Path | None, name: str) -> "Collection":
        directory = _collections_dir(home) / _checked_name(name)
        if not (directory / "pipeline.yaml").exists():
            known = ", ".join(c.name for c in cls.list(home)) or "none yet"
            raise CollectionNotFoundError(
                f"no collection {name!r} under {directory.parent} (known: {known}); "
                f"create it with `ragtune ingest PATH -c {name}`"
            )
        return cls(directory, PipelineConfig.load(directory / "pipeline.yaml"))

    @classmethod
    def list(cls, home: str | Path | None) -> list["Collection"]:
        root = _collections_dir(home)
        if not root.exists():
            return []
        return [cls.open(home, d.name) for d in sorted(root.iterdir()) if (d / "pipeline.yaml").exists()]

    @classmethod
    def delete(cls, home: str | Path | None, name: str) -> None:
        collection = cls.open(home, name)
        # Refuse while another process owns the store, rather than pulling files from under it.
        lock = OwnerLock(collection.dir / "index", f"{collection.index_dir.name}.lock")
        lock.acquire()
        try:
            collection._drop_external_data()
            shutil.rmtree(collection.dir)
        finally:
            lock.release()

    def _drop_external_data(self) -> None:
        """Server-side data of every version (a Qdrant server collection, a PostgreSQL table)."""
        from ragtune.index.factory import drop_store

        for folder in sorted(p for p in (self.dir / "index").iterdir() if (p / "store.json").is_file()):
            drop_store(self.pipeline.store, folder, self.embedder.dim)

    def close(self) -> None:
        if self._store is not None:
            if not self._borrowed_store:
                self._store.close()
            self._store = None
            self._borrowed_store = False
        if self._manifest is not None:
            self._manifest.close()
            self._manifest = None

    def __enter__(self) -> "Collection":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- parts ----------------------------------------------------------------------------------
    def save_pipeline(self) -> None:
        """Write this handle's pipeline as the collection's bound ``pipeline.yaml``."""
        self.pipeline.save(self.dir / "pipeline.yaml")

    def reload(self) -> None:
        """Forget what this handle derived from the live version (its open store, its query
        embedder): after a promotion or rollback the next use follows the new live version."""
        self.close()
        self._embedder = None

    @property
    def live_version(self) -> str:
        return self.index_versions.live

    @property
    def version(self) -> str:
        return self._version or self.live_version

    @property
    def index_dir(self) -> Path:
        """Where this version's vectors live (a version may share another's: see at_version)."""
        record = self.index_versions.find(self.version)
        return self.dir / "index" / (record.index if record and record.index else self.version)

    def versions(self) -> dict[str, dict[str, Any]]:
        """Index versions as ``versions.json`` holds them: {version: {"embedder": model, ...}}
        (a read-only view; change them through ``index_versions``)."""
        return self.index_versions.as_dicts()

    @property
    def manifest(self) -> Manifest:
        if self._manifest is None:
            self._manifest = Manifest(self.dir / "manifest.sqlite")
        return self._manifest

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            from ragtune.models.embedder import Embedder

            # Queries must be embedded by the model that made this version's vectors.
            config = self.pipeline.embedder
            record = self.index_versions.find(self.version)
            if record and record.embedder and record.embedder != config.model:
                config = config.model_copy(update={"model": record.embedder})
            self._embedder = Embedder(config, cache=self.encoder_cache)
        return self._embedder


    @embedder.setter
    def embedder(self, embedder: Any) -> None:
        """Use this embedder for queries (the server wraps it in its micro-batcher); ``reload``
        forgets it again."""
        self._embedder = embedder

    @property
    def encoder_cache(self) -> Path:
        """Where encoder exports and backend measurements live: shared by every collection of
        this home (they are per model and machine, not per collection)."""
        return self.dir.parent.parent / "cache" / "encoders"

    @property
    def store(self) -> Store:
        if self._store is None and self._store_owner is not None:
            # A scoped view opens nothing itself: the first use opens (and keeps) the owner's store,
            # so a view nobody searches costs no store lock (torchrun ranks each make one).
            return self._store_owner.store
        if self._store is None:
            from ragtune.index import open_store

            self._store = open_store(
                self.pipeline.store, self.index_dir, dim=self.embedder.dim
            )
        return self._store

    def scoped(self, tokens: Sequence[str]) -> "Collection":
        """A handle on the same index whose :meth:`chunks` and :meth:`acl_tokens` cover only the
        chunks a reader holding ``tokens`` may see: what synthetic data and training read, so a
        model trained for one scope (``("public",)`` by default) never learns another's text.
        Searches keep the store's ACL filter: jobs search as ``ServicePrincipal(acl_tokens())``."""
        view = Collection(self.dir, self.pipeline.model_copy(deep=True), self.version)
        view._store_owner = self
        view._embedder = self._embedder
        view.data_tokens = tuple(tokens)
        return view

    def acl_tokens(self) -> builtins.list[str]:
        """Every ACL token used by a stored chunk (what a ServicePrincipal needs to see them all);
        on a :meth:`scoped` handle, only the scope's."""
        used = self._used_tokens()
        return sorted(used & set(self.data_tokens) if self.data_tokens is not None else used)

    def _used_tokens(self) -> set[str]:
        return {t for p in self.store.scroll_payloads(["acl"]) for t in p.get("acl", [])}

    def chunks(self) -> builtins.list[dict[str, Any]]:
        """Every stored chunk (a :meth:`scoped` handle's: those its tokens may read): point_id,
        chunk_id, doc_id, title, text, search_text (the embedded text), acl."""
        fields = ["chunk_id", "doc_id", "title", "text", "search_text", "acl"]
        chunks = self.store.scroll_payloads(fields)
        if self.data_tokens is not None:
            allowed = set(self.data_tokens)
            chunks = [c for c in chunks if allowed & set(c.get("acl", []))]
        return sorted(chunks, key=lambda c: c.get("chunk_id", ""))

    def readable_by_all_readers(self, scope: Scope) -> bool:
        """Whether a model trained within ``scope`` may serve every reader of this collection (the
        live embedder, reranker and reader answer all of them): true for public training text,
        or when everything here is readable only by principals the scope allows."""
        return scope.allows_everyone_in(self._used_tokens())

    def data_scope(self) -> Scope:
        """The :class:`~ragtune.types.Scope` of what :meth:`chunks` returns."""
        return Scope.of(c.get("acl", []) for c in self.chunks())

    def stats(self) -> dict[str, Any]:
        """Completeness and freshness: manifest totals plus the last ingest run."""
        out: dict[str, Any] = {"name": self.name, "index_version": self.version}
        out.update(self.manifest.stats())
        out["last_run"] = self.manifest.last_run()
        return out


def _collections_dir(home: str | Path | None) -> Path:
    return ragtune_home(home) / "collections"


def _checked_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):  # match() with $ accepts a trailing newline
        raise InputError(
            f"invalid collection name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _check_compatible(old: PipelineConfig, new: PipelineConfig, name: str) -> None:
    # Chunks already indexed were made with the old embedder/chunker/store settings; mixing
    # would silently corrupt the index. Query and rerank settings may change freely.
    for section in BUILD_SECTIONS:
        if getattr(old, section).model_dump() != getattr(new, section).model_dump():
            raise ConfigError(
                f"collection {name!r} was built with different {section} settings; "
                f"create a new collection to change them (a new embedder: `ragtune models shadow`)"
            )


__all__ = ["Collection", "CollectionNotFoundError", "StoreBusyError"]
