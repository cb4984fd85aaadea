"""A folder (or one file) on this machine, optionally with its POSIX permissions as ACLs.

Every scan is complete: a file no longer there is deleted. With a state from an earlier scan, a
file whose signature (mtime, size, mode, owner, group) is unchanged is not read again — a sync of
an unchanged tree costs one ``stat`` per file, which is what makes continuous sync cheap.

``permissions: true`` mirrors who may read the file: world-readable → public, else the owner (when
the owner may read) and the group (when the group may read), by name (``user:alice``,
``group:staff``; a uid/gid without a name stays numeric). A file nobody may read is reported, not
indexed.

Example:
    >>> import pathlib, tempfile
    >>> root = pathlib.Path(tempfile.mkdtemp()); _ = (root / "a.md").write_text("# A\\n\\nApples.")
    >>> scan = FolderConnector(root, ["**/*"], []).scan({})
    >>> [type(i).__name__ for i in scan.items], scan.complete, len(scan.state["files"])
    (['Document'], True, 1)
"""

from __future__ import annotations

import grp
import os
import pwd
import stat as stat_
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Iterator

from ragtune.ingest.connectors.base import Failed, Item, Scan, Skipped, Unchanged, option, str_list, unknown_options
from ragtune.ingest.loaders import LoadOptions, load_file, loader_for
from ragtune.ingest.walk import SourceFile, walk
from ragtune.types import Acl


def posix_acl(st: os.stat_result) -> Acl:
    """Who may read a file with this ``stat``, as an ACL."""
    mode = st.st_mode
    if mode & stat_.S_IROTH:
        return Acl(public=True)
    users = (_user(st.st_uid),) if mode & stat_.S_IRUSR else ()
    groups = (_group(st.st_gid),) if mode & stat_.S_IRGRP else ()
    return Acl(users=users, groups=groups)


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def signature(st: os.stat_result) -> str:
    return f"{st.st_mtime_ns}:{st.st_size}:{st.st_mode}:{st.st_uid}:{st.st_gid}"


@dataclass
class FolderConnector:
    path: Path
    include: list[str]
    exclude: list[str]
    permissions: bool = False
    load_options: LoadOptions = field(default_factory=LoadOptions)  # the pipeline's (set by the sync)
    type = "folder"

    @classmethod
    def from_options(cls, name: str, options: dict[str, Any], workdir: Path) -> "FolderConnector":
        unknown_options(options, {"path", "include", "exclude", "permissions"}, name)
        path = Path(option(options, "path", str, name)).expanduser().resolve()
        if not path.exists():
            from ragtune.errors import MissingInputError

            raise MissingInputError(f"source {name!r}: {path}: no such file or directory")
        return cls(path, str_list(options, "include", name, ["**/*"]), str_list(options, "exclude", name, []),
                   option(options, "permissions", bool, name, False))

    def scan(self, state: dict[str, Any]) -> Scan:
        files = walk(self.path, self.include, self.exclude)
        before: dict[str, str] = state.get("files", {})
        after: dict[str, str] = {}
        return Scan(self._items(files, before, after), complete=True, state={"files": after}, total=len(files))

    def _items(self, files: list[SourceFile], before: dict[str, str], after: dict[str, str]) -> Iterator[Item]:
        for source in files:
            if loader_for(source.path) is None and self.path.is_dir():
                yield Skipped(str(source.path))
                continue
            try:
                st = source.path.stat()
            except OSError as e:  # deleted between the walk and now: the next scan will not list it
                yield Failed(str(source.path), f"cannot read: {e.strerror or e}")
                continue
            sig = after[source.doc_id] = signature(st)
            if before.get(source.doc_id) == sig:
                yield Unchanged(str(source.path), partial(self._load, source, st))
            else:
                yield from self._load(source, st)

    def _load(self, source: SourceFile, st: os.stat_result) -> Iterator[Item]:
        result = load_file(source.path, source.doc_id, self.load_options)
        for failure in result.failures:
            yield Failed(failure.source, failure.reason)
        for doc in result.documents:
            if self.permissions:
                doc.acl = posix_acl(st)
                doc.metadata["acl_from_source"] = True
            yield doc
