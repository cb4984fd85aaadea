"""Which files an ingest run reads: a file, or a directory walked with include/exclude globs.

Globs match the path relative to the root, ``*`` crossing ``/`` as in ``fnmatch``;
``**/x`` also matches ``x`` at the root. A BEIR folder (``corpus.jsonl`` beside
``queries.jsonl``) contributes only its corpus.

Example:
    >>> matches("docs/guide.md", ["**/*.md"]), matches("README.md", ["**/*.md"])
    (True, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from ragtune.errors import MissingInputError


@dataclass(frozen=True)
class SourceFile:
    path: Path
    doc_id: str  # "<root name>/<relative path>": stable across runs, unique across roots


def matches(rel: str, patterns: list[str]) -> bool:
    return any(
        fnmatchcase(rel, p) or (p.startswith("**/") and fnmatchcase(rel, p[3:])) for p in patterns
    )


def is_beir_folder(path: Path) -> bool:
    return (path / "corpus.jsonl").is_file() and (path / "queries.jsonl").is_file()


def walk(root: Path, include: list[str], exclude: list[str]) -> list[SourceFile]:
    root = root.resolve()
    if root.is_file():
        return [SourceFile(root, root.name)]
    if not root.is_dir():
        raise MissingInputError(f"{root}: no such file or directory")
    if is_beir_folder(root):
        return [SourceFile(root / "corpus.jsonl", f"{root.name}/corpus.jsonl")]
    out = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if matches(rel, include) and not matches(rel, exclude):
            out.append(SourceFile(path, f"{root.name}/{rel}"))
    return out
