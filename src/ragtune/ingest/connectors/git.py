"""A git repository: one branch, files matching path globs, incremental by commit.

``repo`` is a local repository (read in place, never written) or a URL, mirrored into the
source's own folder and fetched at each sync. The first sync lists every matching file at the
branch's head; later ones read only ``git diff`` between the last synced commit and the new head
(added and modified files are read, deleted ones removed). When the last commit is no longer an
ancestor (a force push), the sync lists everything again.

Files are read with the same loaders as a folder (by extension), straight from git's object store
(``git cat-file --batch``), never from a checkout.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ragtune.errors import InputError, MissingInputError, UpstreamError
from ragtune.ingest.connectors.base import Failed, Item, Removed, Scan, Skipped, option, str_list, unknown_options
from ragtune.ingest.loaders import LoadOptions, load_file, loader_for
from ragtune.ingest.walk import matches


@dataclass
class GitConnector:
    name: str
    repo: str
    branch: str
    include: list[str]
    exclude: list[str]
    workdir: Path
    load_options: LoadOptions = field(default_factory=LoadOptions)  # the pipeline's (set by the sync)
    type = "git"

    @classmethod
    def from_options(cls, name: str, options: dict[str, Any], workdir: Path) -> "GitConnector":
        unknown_options(options, {"repo", "branch", "include", "exclude"}, name)
        repo = option(options, "repo", str, name)
        if "://" not in repo and not repo.startswith("git@"):
            path = Path(repo).expanduser().resolve()
            if not path.exists():
                raise MissingInputError(f"source {name!r}: repository {path} does not exist")
            repo = str(path)
        return cls(name, repo, option(options, "branch", str, name, "main"), str_list(options, "include", name, ["**/*"]),
                   str_list(options, "exclude", name, []), workdir)

    # -- git --------------------------------------------------------------------------------------
    def _git_dir(self) -> Path:
        if "://" not in self.repo and not self.repo.startswith("git@"):
            return Path(self.repo)
        mirror = self.workdir / "mirror.git"
        if not (mirror / "HEAD").exists():
            mirror.parent.mkdir(parents=True, exist_ok=True)
            self._run(["git", "clone", "--mirror", "--quiet", self.repo, str(mirror)], cwd=None)
        else:
            self._run(["git", "fetch", "--prune", "--quiet", "origin"], cwd=mirror)
        return mirror

    def _run(self, args: list[str], cwd: Path | None, check: bool = True) -> str:
        done = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
        if check and done.returncode != 0:
            raise UpstreamError(f"source {self.name!r}: `{' '.join(args[:3])}` failed: {done.stderr.strip()[:300]}")
        return done.stdout

    def _head(self, git_dir: Path) -> str:
        out = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{self.branch}^{{commit}}"], cwd=git_dir,
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise InputError(f"source {self.name!r}: branch {self.branch!r} not found in {self.repo}")
        return out.stdout.strip()

    # -- scan -------------------------------------------------------------------------------------
    def scan(self, state: dict[str, Any]) -> Scan:
        git_dir = self._git_dir()
        head = self._head(git_dir)
        old: str = state.get("commit") or ""
        if old == head:
            return Scan(iter(()), complete=False, state={"commit": head}, total=0)
        incremental = old != "" and subprocess.run(["git", "merge-base", "--is-ancestor", old, head], cwd=git_dir,
                                                   capture_output=True).returncode == 0
        if incremental:
            changes = self._diff(git_dir, old, head)
        else:
            changes = [("A", p) for p in self._run(["git", "ls-tree", "-r", "-z", "--name-only", head], git_dir).split("\0") if p]
        changes = [(s, p) for s, p in changes if matches(p, self.include) and not matches(p, self.exclude)]
        return Scan(self._items(git_dir, head, changes), complete=not incremental, state={"commit": head, "previous": old or None},
                    total=len(changes))

    def _diff(self, git_dir: Path, old: str, new: str) -> list[tuple[str, str]]:
        out = self._run(["git", "diff", "--name-status", "-z", "--no-renames", old, new], git_dir).split("\0")
        return [(out[i][0], out[i + 1]) for i in range(0, len(out) - 1, 2) if out[i]]

    def source_of(self, path: str) -> str:
        return f"{self.repo}@{self.branch}:{path}"

    def _items(self, git_dir: Path, head: str, changes: list[tuple[str, str]]) -> Iterator[Item]:
        when = float(self._run(["git", "show", "-s", "--format=%ct", head], git_dir).strip() or 0)
        wanted = []
        for status, path in changes:
            if status == "D":
                yield Removed(self.source_of(path))
            elif loader_for(Path(path)) is None:
                yield Skipped(self.source_of(path))
            else:
                wanted.append(path)
        with tempfile.TemporaryDirectory(prefix="ragtune-git-") as scratch, subprocess.Popen(
                ["git", "cat-file", "--batch"], cwd=git_dir, stdin=subprocess.PIPE, stdout=subprocess.PIPE) as cat:
            assert cat.stdin is not None and cat.stdout is not None
            for i, path in enumerate(wanted):
                cat.stdin.write(f"{head}:{path}\n".encode())
                cat.stdin.flush()
                header = cat.stdout.readline().decode().split()
                if len(header) < 3 or header[1] != "blob":
                    yield Failed(self.source_of(path), f"not a file at {head[:12]}")
                    continue
                blob = cat.stdout.read(int(header[2]))
                cat.stdout.read(1)  # the newline after each object
                # Loaders read files: give each blob a file with its own name (the extension picks the loader).
                tmp = Path(scratch) / str(i) / Path(path).name
                tmp.parent.mkdir()
                tmp.write_bytes(blob)
                yield from self._load(tmp, path, when)
                tmp.unlink()
            cat.stdin.close()

    def _load(self, tmp: Path, path: str, when: float) -> Iterator[Item]:
        result = load_file(tmp, f"{self.name}/{path}", self.load_options)
        source = self.source_of(path)
        for failure in result.failures:
            yield Failed(source, failure.reason)
        for doc in result.documents:
            doc.source, doc.mtime = source, when
            # No commit id here: it would relabel every unchanged file whenever history is rewritten.
            doc.metadata = {**doc.metadata, "path": path}
            yield doc
