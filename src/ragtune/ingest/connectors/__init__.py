"""Connectors: sources of documents that stay in sync (one module per kind of source).

Built in: ``folder``, ``web``, ``git``, ``mailbox``. A package adds its own under the
``ragtune.connectors`` entry-point group::

    [project.entry-points."ragtune.connectors"]
    confluence = "my_package.confluence:ConfluenceConnector"

Example:
    >>> from ragtune.ingest.connectors import connector_class
    >>> connector_class("git").__name__
    'GitConnector'
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from ragtune.errors import InputError
from ragtune.ingest.connectors.base import Connector, Failed, Item, Removed, Scan, Skipped, Unchanged
from ragtune.ingest.connectors.folder import FolderConnector
from ragtune.ingest.connectors.git import GitConnector
from ragtune.ingest.connectors.mailbox import MailboxConnector
from ragtune.ingest.connectors.web import WebConnector

BUILT_IN: dict[str, Any] = {c.type: c for c in (FolderConnector, WebConnector, GitConnector, MailboxConnector)}
ENTRY_POINT_GROUP = "ragtune.connectors"


def available() -> list[str]:
    return sorted({*BUILT_IN, *(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))})


def connector_class(kind: str) -> Any:
    """The connector class registered as ``kind`` (built in first, then entry points)."""
    if kind in BUILT_IN:
        return BUILT_IN[kind]
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == kind:
            return ep.load()
    raise InputError(f"unknown source type {kind!r}: choose from {', '.join(available())} "
                     f"(or install a package that registers it under the {ENTRY_POINT_GROUP!r} entry points)")


__all__ = ["BUILT_IN", "Connector", "Failed", "Item", "Removed", "Scan", "Skipped", "Unchanged", "available",
           "connector_class"]
