"""Whose text a synthetic data file holds: ``<stem>.scope.json`` beside it, the
:class:`~ragtune.types.Scope` of the chunks it was made from. Training reads it and records it on
the artefact (adapter, reader), and the server serves that artefact only to principals inside
the scope. A file without one (someone else's data) has an unknown scope: only admins use what
is trained on it, unless the operator says the data is public.

Example:
    >>> import tempfile, pathlib
    >>> from ragtune.types import Scope
    >>> data = pathlib.Path(tempfile.mkdtemp()) / "squad.json"
    >>> write_scope(data, Scope.of([["group:hr"]]))
    >>> read_scope(data).to_list(), read_scope(data.with_name("other.json"))
    ([['group:hr']], None)
"""

from __future__ import annotations

import json
from pathlib import Path

from ragtune.errors import InputError
from ragtune.types import Scope


def scope_file(data: Path) -> Path:
    return data.with_name(f"{data.stem}.scope.json")


def write_scope(data: Path, scope: Scope) -> None:
    scope_file(data).write_text(json.dumps({"scope": scope.to_list()}) + "\n")


def read_scope(data: Path) -> Scope | None:
    path = scope_file(data)
    if not path.exists():
        return None
    try:
        return Scope.of(json.loads(path.read_text())["scope"])
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(f"{path}: not a scope file ({e}); delete it to treat the data's scope as unknown") from e
