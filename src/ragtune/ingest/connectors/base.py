"""What a connector is: a source of documents that lists what changed since its last cursor.

A connector knows one kind of source (a folder, a web site, a git repository, a mailbox…). Its
``scan(state)`` returns a :class:`Scan`: an iterator of items and, once the items are exhausted,
the state to remember for next time (a cursor: a commit, ETags, file signatures). The sync core
(:func:`ragtune.ingest.sync.sync_scan`) turns the items into index writes through the manifest,
so every connector inherits crash safety and incremental re-embedding by content hash; the state
is stored only after a scan went through, so a sync killed half-way simply redoes its scan.

Items:

- a :class:`~ragtune.types.Document`: present at the source, with its content;
- :class:`Unchanged`: present and known unchanged (same file signature, HTTP 304) without
  fetching it; ``reload`` fetches it anyway, for when the index does not hold it (yet);
- :class:`Removed`: gone from the source (incremental connectors: a deleted file in a commit);
- :class:`Failed`: could not be read this time; its last good version is kept;
- :class:`Skipped`: not a kind of content ragtune reads.

A *complete* scan lists everything the source holds, so whatever it did not list is deleted; an
incremental one lists only changes. A connector whose source mirrors permissions sets the
document's ACL and ``metadata["acl_from_source"] = True``.

Third-party connectors register under the ``ragtune.connectors`` entry-point group (name → class
with ``from_options``), so a user adds one without touching ragtune.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Iterator, Protocol, Union

from ragtune.errors import InputError
from ragtune.types import Document


@dataclass(frozen=True)
class Unchanged:
    source: str  # the ``Document.source`` of what it holds
    reload: Callable[[], Iterable["Item"]]


@dataclass(frozen=True)
class Removed:
    source: str  # every document of the scan's root that came from this source goes


@dataclass(frozen=True)
class Failed:
    source: str
    reason: str


@dataclass(frozen=True)
class Skipped:
    source: str


Item = Union[Document, Unchanged, Removed, Failed, Skipped]


@dataclass
class Scan:
    """``complete`` and ``state`` are read once ``items`` is exhausted, so a connector may settle
    them while it lists (a crawl that hits its page limit is not complete)."""

    items: Iterator[Item]
    complete: bool  # lists everything at the source: what it did not list is gone
    state: dict[str, Any] = field(default_factory=dict)
    total: int | None = None  # items expected, for progress bars, when known up front


class Connector(Protocol):
    type: ClassVar[str]

    @classmethod
    def from_options(cls, name: str, options: dict[str, Any], workdir: Path) -> "Connector":
        """Check ``options`` (errors name the field) and build; ``workdir``: the source's own folder
        inside the collection (clones, caches)."""
        ...

    def scan(self, state: dict[str, Any]) -> Scan:
        ...


def option(options: dict[str, Any], key: str, kind: type | tuple[type, ...], source: str, default: Any = ...) -> Any:
    """``options[key]`` checked against ``kind``; a missing required key or a wrong type is an
    InputError naming the source and the field."""
    if key not in options or options[key] is None:
        if default is ...:
            raise InputError(f"source {source!r}: option {key!r} is required")
        return default
    value = options[key]
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        raise InputError(f"source {source!r}: option {key!r} must be a number, not {value!r}")
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise InputError(f"source {source!r}: option {key!r} must be {names}, not {value!r}")
    return value


def str_list(options: dict[str, Any], key: str, source: str, default: list[str]) -> list[str]:
    value = options.get(key, default)
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(f"source {source!r}: option {key!r} must be a list of strings, not {value!r}")
    return [v.strip() for v in value]


def unknown_options(options: dict[str, Any], known: set[str], source: str) -> None:
    extra = sorted(set(options) - known)
    if extra:
        raise InputError(f"source {source!r}: unknown option(s) {extra}; this connector takes {sorted(known)}")
