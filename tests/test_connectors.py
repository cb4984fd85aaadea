"""Connectors against real sources running here: a folder with POSIX permissions, a git
repository with history, a web site served over loopback HTTP, an mbox file and a Dovecot IMAP
server (Debian's package, started by the test)."""

from __future__ import annotations

import grp
import hashlib
import imaplib
import mailbox
import os
import pwd
import shutil
import subprocess
import threading
import time
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ragtune.ingest.sources import add_source, list_sources, remove_source, sync_source
from ragtune.types import Acl


def _docs(coll, root: str) -> dict[str, object]:
    return {r.doc_id: r for r in coll.manifest.all(root)}


def _texts(coll) -> dict[str, str]:
    return {c["doc_id"]: c["text"] for c in coll.chunks()}


# -- folder -----------------------------------------------------------------------------------------
def test_folder_source_mirrors_posix_permissions_and_skips_unchanged_files(tmp_path, make_tiny_collection):
    coll = make_tiny_collection("f")
    root = tmp_path / "share"
    root.mkdir()
    for name, mode in [("open.md", 0o644), ("team.md", 0o640), ("mine.md", 0o600)]:
        (root / name).write_text(f"# {name}\n\nThe {name} page says hello.")
        os.chmod(root / name, mode)
    me, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    add_source(coll, "share", "folder", {"path": str(root), "permissions": True}, Acl())
    events: list[tuple[str, int, int]] = []
    first = sync_source(coll, "share", lambda *e: events.append(e))
    assert (first.indexed, first.failed) == (3, 0)
    assert [e for e in events if e[0] == "files"][-1] == ("files", 3, 3)
    acl = {d.split("/")[-1]: Acl.from_dict(r.acl) for d, r in _docs(coll, "source:share").items()}
    assert acl["open.md"] == Acl(public=True)
    assert acl["team.md"] == Acl(users=(me,), groups=(group,))
    assert acl["mine.md"] == Acl(users=(me,))

    # Unchanged signature → not read again: a rewrite that keeps size and mtime goes unnoticed,
    # which is the proof that the sync did not open the file (rsync's trade-off, on purpose).
    st = (root / "open.md").stat()
    (root / "open.md").write_text((root / "open.md").read_text().replace("hello", "HELLO"))
    os.utime(root / "open.md", ns=(st.st_atime_ns, st.st_mtime_ns))
    again = sync_source(coll, "share")
    assert (again.unchanged, again.indexed, again.updated) == (3, 0, 0)
    assert "HELLO" not in " ".join(_texts(coll).values())

    os.chmod(root / "team.md", 0o644)  # permission change only: relabelled, not re-embedded
    (root / "mine.md").unlink()
    (root / "new.md").write_text("# New\n\nA new page.")
    third = sync_source(coll, "share")
    assert (third.relabelled, third.deleted, third.indexed) == (1, 1, 1)
    assert Acl.from_dict(coll.manifest.get(f"{root.name}/team.md").acl) == Acl(public=True)
    status = list_sources(coll)[0].describe()
    assert status["syncs"] == 3 and status["changed"] == 2 and status["deleted"] == 1 and status["lag_s"] >= 0

    gone = remove_source(coll, "share")
    assert gone.deleted == 3 and not _docs(coll, "source:share") and not coll.chunks()


def test_a_watched_folder_is_searchable_seconds_after_a_change(tmp_path, make_tiny_collection):
    from ragtune.ingest.watch import SourceWatcher

    coll = make_tiny_collection("watched")
    root = tmp_path / "live"
    root.mkdir()
    (root / "first.md").write_text("# First\n\nThe first note.")
    add_source(coll, "live", "folder", {"path": str(root)}, Acl(public=True))
    syncs: list[tuple[str, int, int]] = []
    watcher = SourceWatcher(coll, debounce_s=0.2, tick_s=0.05,
                            on_sync=lambda n, r, e: syncs.append((n, r.indexed if r else -1, r.deleted if r else -1)))
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()

    def wait_for(check, timeout: float = 10.0) -> float:
        start = time.monotonic()
        while not check():
            assert time.monotonic() - start < timeout, f"no sync after {timeout} s: {syncs}"
            time.sleep(0.02)
        return time.monotonic() - start

    try:
        wait_for(lambda: coll.manifest.get("live/first.md") is not None)  # the initial sync
        (root / "second.md").write_text("# Second\n\nA note written while watched.")
        lag = wait_for(lambda: (r := coll.manifest.get("live/second.md")) is not None and r.state == "indexed")
        assert lag < 5.0  # the freshness target for folders, p50 ≤ 5 s
        (root / "first.md").unlink()
        wait_for(lambda: coll.manifest.get("live/first.md") is None)
    finally:
        watcher.stop()
        thread.join(timeout=10)
    assert not thread.is_alive() and all(n == "live" for n, *_ in syncs)


def test_updating_a_source_reaches_documents_its_cursor_would_skip(tmp_path, make_tiny_collection):
    from ragtune.ingest.sources import get_source, update_source

    coll = make_tiny_collection("upd")
    root = tmp_path / "docs"
    root.mkdir()
    (root / "a.md").write_text("# A\n\nApples.")
    (root / "b.txt").write_text("Bananas.")
    add_source(coll, "docs", "folder", {"path": str(root)}, Acl(groups=("staff",)), every_s=60)
    assert sync_source(coll, "docs").indexed == 2
    update_source(coll, "docs", acl=Acl(groups=("staff", "contractors")))
    relabel = sync_source(coll, "docs")  # both files are unchanged on disk: only the cursor reset reaches them
    assert (relabel.relabelled, relabel.indexed, relabel.updated) == (2, 0, 0)
    assert all(set(Acl.from_dict(r.acl).groups) == {"staff", "contractors"} for r in _docs(coll, "source:docs").values())
    update_source(coll, "docs", {"include": ["**/*.md"]}, every_s=None)
    narrowed = sync_source(coll, "docs")
    assert narrowed.deleted == 1 and set(_docs(coll, "source:docs")) == {f"{root.name}/a.md"}
    src = get_source(coll, "docs")
    assert src.every_s is None and src.options == {"path": str(root), "include": ["**/*.md"]}
    from ragtune.errors import InputError

    with pytest.raises(InputError, match="unknown option"):
        update_source(coll, "docs", {"colour": "blue"})


def test_a_source_without_an_acl_or_with_a_bad_option_is_refused_by_name(tmp_path, make_tiny_collection):
    from ragtune.errors import InputError, MissingInputError

    coll = make_tiny_collection("bad")
    with pytest.raises(InputError, match="nobody could see"):
        add_source(coll, "s", "folder", {"path": str(tmp_path)}, Acl())
    with pytest.raises(InputError, match="option 'permissions' must be bool"):
        add_source(coll, "s", "folder", {"path": str(tmp_path), "permissions": "yes"}, Acl(public=True))
    with pytest.raises(InputError, match=r"unknown option\(s\) \['pth'\]"):
        add_source(coll, "s", "folder", {"pth": str(tmp_path)}, Acl(public=True))
    with pytest.raises(MissingInputError, match="no such file"):
        add_source(coll, "s", "folder", {"path": str(tmp_path / "nope")}, Acl(public=True))
    with pytest.raises(InputError, match="unknown source type 'dropbox'"):
        add_source(coll, "s", "dropbox", {}, Acl(public=True))
    assert list_sources(coll) == []


# -- git --------------------------------------------------------------------------------------------
def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@x"}
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout


def _commit(repo: Path, files: dict[str, str | None], message: str) -> None:
    for name, text in files.items():
        path = repo / name
        if text is None:
            path.unlink()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", message)


@pytest.mark.parametrize("by_url", [False, True])
def test_git_source_reads_only_what_each_commit_changed(tmp_path, make_tiny_collection, by_url):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _commit(repo, {"a.md": "# A\n\nAlpha.", "b.txt": "Beta notes.", "docs/c.md": "# C\n\nGamma.",
                   "logo.png": "not text", "vendor/x.md": "# X\n\nvendored"}, "first")
    coll = make_tiny_collection("g")
    add_source(coll, "code", "git", {"repo": f"file://{repo}" if by_url else str(repo), "branch": "main",
                                     "exclude": ["vendor/**"]}, Acl(groups=("eng",)))
    first = sync_source(coll, "code")
    assert (first.indexed, first.skipped, first.failed) == (3, 1, 0)
    assert set(_docs(coll, "source:code")) == {"code/a.md", "code/b.txt", "code/docs/c.md"}

    _commit(repo, {"a.md": "# A\n\nAlpha, revised.", "b.txt": None, "docs/d.md": "# D\n\nDelta."}, "second")
    second = sync_source(coll, "code")
    # Incremental: only the three changed paths were looked at.
    assert (second.seen, second.updated, second.indexed, second.deleted, second.unchanged) == (2, 1, 1, 1, 0)
    assert set(_docs(coll, "source:code")) == {"code/a.md", "code/docs/c.md", "code/docs/d.md"}
    assert "Alpha, revised." in _texts(coll)["code/a.md"]
    head = _git(repo, "rev-parse", "HEAD").strip()
    assert coll.manifest.get("code/a.md") and list_sources(coll)[0].state["commit"] == head
    assert sync_source(coll, "code").seen == 0  # nothing new: nothing read

    # History rewritten (force push): the old commit is not an ancestor, so everything is listed again.
    _git(repo, "checkout", "-q", "--orphan", "rewritten")
    _git(repo, "rm", "-r", "-q", "--cached", ".")
    for p in list(repo.iterdir()):
        if p.name != ".git":
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    _commit(repo, {"a.md": "# A\n\nAlpha, revised."}, "rewritten")
    _git(repo, "branch", "-f", "main", "rewritten")
    third = sync_source(coll, "code")
    assert (third.unchanged, third.deleted) == (1, 2)
    assert set(_docs(coll, "source:code")) == {"code/a.md"}


# -- web --------------------------------------------------------------------------------------------
class Site:
    """A small web site on 127.0.0.1 with ETags, robots.txt and a sitemap; it logs every request."""

    def __init__(self, pages: dict[str, str]):
        self.pages = dict(pages)
        self.log: list[tuple[float, str, int]] = []  # (time, path, status)
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                path = self.path.split("#")[0]
                if path not in site.pages:
                    return self._send(404, b"not found", "text/plain")
                body = site.pages[path].encode()
                etag = '"' + hashlib.sha1(body).hexdigest() + '"'
                if self.headers.get("If-None-Match") == etag:
                    site.log.append((time.monotonic(), path, 304))
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.end_headers()
                    return
                kind = "text/plain" if path == "/robots.txt" else "application/xml" if path.endswith(".xml") else \
                    "application/pdf" if path.endswith(".pdf") else "text/html; charset=utf-8"
                self._send(200, body, kind, etag)

            def _send(self, status, body, kind, etag=None):
                site.log.append((time.monotonic(), self.path, status))
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                if etag:
                    self.send_header("ETag", etag)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


def _page(title: str, body: str, links: list[str] = ()) -> str:
    nav = "<nav><a href='/'>Home</a> site menu</nav>"
    anchors = "".join(f"<a href='{href}'>{href}</a>" for href in links)
    return f"<html><head><title>{title}</title></head><body>{nav}<main><h1>{title}</h1><p>{body}</p>{anchors}</main></body></html>"


@pytest.mark.slow  # a real HTTP server
def test_web_source_crawls_in_scope_and_recrawls_with_conditional_requests(tmp_path, make_tiny_collection):
    site = Site({})
    site.pages.update({
        "/": _page("Home", "Welcome to the handbook.", ["/a", "/b#part", "/private/secret", "/report.pdf",
                                                        "http://elsewhere.example/x", "/missing"]),
        "/a": _page("Leave", "Employees get 25 days of leave.", ["/b"]),
        "/b": _page("Travel", "Trains for short trips.", ["/"]),
        "/c": _page("Laptops", "Replaced every three years."),  # linked from nowhere: only the sitemap has it
        "/private/secret": _page("Secret", "robots.txt forbids this page."),
        "/report.pdf": "%PDF-1.4 not html",
        "/robots.txt": "User-agent: *\nDisallow: /private/\n",
        "/sitemap.xml": "<?xml version='1.0'?><urlset xmlns='http://www.sitemaps.org/schemas/sitemap/0.9'>"
                        f"<url><loc>{site.url}/c</loc></url></urlset>",
    })
    try:
        coll = make_tiny_collection("w")
        add_source(coll, "site", "web", {"start": site.url + "/", "sitemap": site.url + "/sitemap.xml", "delay_s": 0.1},
                   Acl(public=True))
        first = sync_source(coll, "site")
        docs = set(_docs(coll, "source:site"))
        assert docs == {f"site/{site.url}{p}" for p in ("/", "/a", "/b", "/c")}, docs
        assert (first.indexed, first.skipped) == (4, 1)
        fetched = [p for _, p, _ in site.log]
        assert "/private/secret" not in fetched and fetched.count("/b") == 1  # robots obeyed; /b#part is /b
        text = _texts(coll)[f"site/{site.url}/a"]
        assert "25 days of leave" in text and "site menu" not in text  # main content only
        gaps = [b - a for (a, *_), (b, *_) in zip(site.log, site.log[1:])]
        assert min(gaps) >= 0.09  # one request per delay_s to the host

        # Re-crawl of the unchanged site: every page answers 304, no page body is sent again.
        site.log.clear()
        again = sync_source(coll, "site")
        full = [p for _, p, s in site.log if s == 200 and p not in ("/robots.txt", "/sitemap.xml")]
        assert full == [] and (again.unchanged, again.indexed, again.deleted) == (4, 0, 0)

        site.pages["/b"] = _page("Travel", "Trains for trips under four hours.", ["/"])
        del site.pages["/c"]
        site.pages["/sitemap.xml"] = "<?xml version='1.0'?><urlset xmlns='http://www.sitemaps.org/schemas/sitemap/0.9'></urlset>"
        third = sync_source(coll, "site")
        assert (third.updated, third.deleted, third.unchanged) == (1, 1, 2)
        assert "under four hours" in _texts(coll)[f"site/{site.url}/b"]
    finally:
        site.close()


# -- mail -------------------------------------------------------------------------------------------
def _message(subject: str, body: str, msg_id: str, attachment: tuple[str, str] | None = None) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"], msg["Message-ID"] = "bob@example.com", "alice@example.com", subject, msg_id
    msg["Date"] = "Tue, 01 Dec 2026 10:00:00 +0000"
    msg.set_content(body)
    if attachment:
        msg.add_attachment(attachment[1].encode(), maintype="text", subtype="markdown", filename=attachment[0])
    return msg


@pytest.mark.parametrize("kind", ["mbox", "maildir"])
def test_local_mail_indexes_messages_and_attachments_for_their_owner(tmp_path, make_tiny_collection, kind):
    path = tmp_path / ("alice.mbox" if kind == "mbox" else "Maildir")
    box = mailbox.mbox(path) if kind == "mbox" else mailbox.Maildir(path)
    box.add(_message("Offsite plan", "The offsite is in Lisbon in May.", "<1@example.com>",
                     ("agenda.md", "# Agenda\n\nDay one: strategy.")))
    box.add(_message("Lunch", "Pizza on Friday.", "<2@example.com>"))
    box.flush()
    coll = make_tiny_collection("m")
    add_source(coll, "mail", "mailbox", {"path": str(path), "owner": "alice"}, Acl())
    report = sync_source(coll, "mail")
    assert (report.indexed, report.failed) == (3, 0)
    docs = _docs(coll, "source:mail")
    assert all(Acl.from_dict(r.acl) == Acl(users=("alice",)) for r in docs.values())
    texts = _texts(coll)
    assert any("Lisbon" in t for t in texts.values()) and any("Day one: strategy" in t for t in texts.values())
    box.remove(next(k for k, m in box.items() if m["Subject"] == "Lunch"))
    box.flush()
    again = sync_source(coll, "mail")
    assert (again.deleted, again.unchanged, again.indexed) == (1, 2, 0)


@pytest.fixture
def dovecot():
    """A real Dovecot IMAP server on loopback with one user, alice / secret."""
    from servers import DOVECOT, dovecot_server

    if not DOVECOT.exists():
        if os.environ.get("CI"):
            raise AssertionError("CI must install Debian's dovecot-imapd (scripts/ensure-system-packages.sh)")
        pytest.skip("Debian dovecot-imapd is not installed here")
    if os.getuid() != 0:
        pytest.skip("the Dovecot fixture runs the server as root (it switches to the dovecot user for mail)")
    with dovecot_server() as port:
        yield port


@pytest.mark.slow  # a real IMAP server
def test_imap_source_fetches_only_new_messages_and_drops_expunged_ones(dovecot, make_tiny_collection, monkeypatch):
    imap = imaplib.IMAP4("127.0.0.1", dovecot)
    imap.login("alice", "secret")
    for i, (subject, body) in enumerate([("Budget", "The 2027 budget is frozen."), ("Hiring", "Two new engineers in March.")]):
        imap.append("INBOX", None, None, _message(subject, body, f"<{i}@example.com>").as_bytes())
    monkeypatch.setenv("ALICE_IMAP_PASSWORD", "secret")
    coll = make_tiny_collection("imap")
    add_source(coll, "inbox", "mailbox", {"imap_host": "127.0.0.1", "imap_port": dovecot, "imap_ssl": False,
                                          "username": "alice", "password_env": "ALICE_IMAP_PASSWORD"}, Acl())
    assert "secret" not in str(coll.manifest.source("inbox"))  # the password is never stored
    first = sync_source(coll, "inbox")
    assert (first.indexed, first.failed) == (2, 0)
    assert all(Acl.from_dict(r.acl) == Acl(users=("alice",)) for r in _docs(coll, "source:inbox").values())

    imap.append("INBOX", None, None, _message("Offsite", "The offsite moves to June.", "<9@example.com>").as_bytes())
    imap.select("INBOX")
    imap.store("1", "+FLAGS", "\\Deleted")
    imap.expunge()
    imap.logout()
    second = sync_source(coll, "inbox")
    assert (second.indexed, second.unchanged, second.deleted) == (1, 1, 1)
    texts = " ".join(_texts(coll).values())
    assert "offsite moves to June" in texts and "budget is frozen" not in texts

    monkeypatch.delenv("ALICE_IMAP_PASSWORD")
    from ragtune.errors import InputError

    with pytest.raises(InputError, match="ALICE_IMAP_PASSWORD"):
        sync_source(coll, "inbox")
    assert "ALICE_IMAP_PASSWORD" in list_sources(coll)[0].status["last_error"]


# -- kill -9 mid-sync -----------------------------------------------------------------------------
def _snapshot(home: Path, name: str):
    from ragtune.collection import Collection

    with Collection.open(home, name) as coll:
        stats = {k: v for k, v in coll.manifest.stats().items() if k != "last_indexed_at"}
        return sorted((p["point_id"], p["doc_hash"]) for p in coll.store.scroll_payloads(["doc_hash"])), stats


def _indexed_since(home: Path, name: str, since: float) -> int:
    import sqlite3

    db = home / "collections" / name / "manifest.sqlite"
    try:
        with sqlite3.connect(db, timeout=1) as con:
            return con.execute("SELECT COUNT(*) FROM documents WHERE state='indexed' AND indexed_at > ?",
                               (since,)).fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def _sync_and_kill(home: Path, name: str, after_docs: int) -> None:
    import signal
    import sys

    since = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "ragtune", "sources", "sync", "code", "-c", name, "--json"],
                            env={**os.environ, "RAGTUNE_HOME": str(home)}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while _indexed_since(home, name, since) < after_docs:
        if proc.poll() is not None:
            pytest.fail(f"sync ended before it could be killed: {proc.stderr.read().decode()[-2000:]}")
        assert time.time() < deadline, "sync made no progress"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.mark.slow  # subprocesses killed mid-sync
def test_a_git_sync_killed_mid_way_then_rerun_is_exact(tmp_path, tiny_embedder):
    from conftest import run_cli

    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")

    def note(i: int, version: int) -> str:
        return f"# Note {i}\n\n" + " ".join(f"Line {j} (v{version}) of note {i} about topic {i % 7}." for j in range(6))

    _commit(repo, {f"notes/n{i:02d}.md": note(i, 1) for i in range(30)}, "thirty notes")
    home = tmp_path / "home"
    sets = [a for o in [f"embedder.model={tiny_embedder}", "ingest.batch_chunks=2", "chunking.chunk_size=24",
                        "chunking.chunk_overlap=4"] for a in ("--set", o)]
    for name in ("kb", "ref"):
        run_cli("sources", "add", "code", "-c", name, "--type", "git", "-o", f"repo={repo}", "--public", *sets, home=home)
    run_cli("sources", "sync", "code", "-c", "ref", home=home)
    _sync_and_kill(home, "kb", after_docs=5)
    killed, stats = _snapshot(home, "kb")
    assert 5 <= stats["documents"] - stats["pending"] < 30
    run_cli("sources", "sync", "code", "-c", "kb", home=home)
    assert _snapshot(home, "kb") == _snapshot(home, "ref"), "none lost, none doubled"

    # An incremental sync (edits, deletions, additions) killed half-way, then re-run.
    _commit(repo, {**{f"notes/n{i:02d}.md": note(i, 2) for i in range(0, 20)},
                   **{f"notes/n{i:02d}.md": None for i in range(25, 30)},
                   **{f"notes/new{i}.md": note(100 + i, 3) for i in range(3)}}, "edit, delete, add")
    run_cli("sources", "sync", "code", "-c", "ref", home=home)
    _sync_and_kill(home, "kb", after_docs=4)
    assert _snapshot(home, "kb") != _snapshot(home, "ref"), "killed before it finished"
    run_cli("sources", "sync", "code", "-c", "kb", home=home)
    points, stats = _snapshot(home, "kb")
    assert (points, stats) == _snapshot(home, "ref") and stats["documents"] == 28 and stats["pending"] == 0
    assert len(points) == len({p for p, _ in points})


def test_the_pipelines_pdf_choices_reach_every_connector(tmp_path, make_tiny_collection):
    from test_loaders import _table_pdf

    from ragtune.ingest.sync import ingest

    folder = tmp_path / "pdfs"
    folder.mkdir()
    _table_pdf(folder / "budget.pdf")
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    shutil.copy(folder / "budget.pdf", repo / "budget.pdf")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "budget")
    row = "Item: Laptop; Owner: IT; Cost: 1200"
    tables = make_tiny_collection("tables", ["ingest.pdf_tables=true"])
    add_source(tables, "pdfs", "folder", {"path": str(folder)}, Acl(public=True))
    add_source(tables, "repo", "git", {"repo": str(repo)}, Acl(public=True))
    sync_source(tables, "pdfs"), sync_source(tables, "repo")
    ingest(tables, folder / "budget.pdf", Acl(public=True))
    texts = _texts(tables)
    assert len(texts) == 3 and all(row in t for t in texts.values()), texts
    plain = make_tiny_collection("plain")
    add_source(plain, "pdfs", "folder", {"path": str(folder)}, Acl(public=True))
    sync_source(plain, "pdfs")
    assert row not in " ".join(_texts(plain).values())


def test_a_connector_from_another_package_registers_through_entry_points(tmp_path, make_tiny_collection, monkeypatch):
    """An installed distribution (a real .dist-info on sys.path) adds the type `notes` without
    touching ragtune; its scan goes through the same sync core."""
    (tmp_path / "notes_connector.py").write_text('''
from dataclasses import dataclass
from ragtune.ingest.connectors import Removed, Scan
from ragtune.types import Document

@dataclass
class NotesConnector:
    name: str
    notes: dict
    type = "notes"

    @classmethod
    def from_options(cls, name, options, workdir):
        return cls(name, dict(options["notes"]))

    def scan(self, state):
        gone = [Removed(f"notes:{k}") for k in state.get("keys", []) if k not in self.notes]
        docs = [Document(id=f"{self.name}/{k}", text=v, source=f"notes:{k}", title=k) for k, v in self.notes.items()]
        return Scan(iter(gone + docs), complete=False, state={"keys": sorted(self.notes)})
''')
    dist = tmp_path / "ragtune_notes-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ragtune-notes\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[ragtune.connectors]\nnotes = notes_connector:NotesConnector\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from ragtune.ingest.connectors import available

    assert "notes" in available()
    coll = make_tiny_collection("plugin")
    add_source(coll, "memo", "notes", {"notes": {"a": "Apples are red.", "b": "Bananas are yellow."}}, Acl(public=True))
    assert sync_source(coll, "memo").indexed == 2
    with coll.manifest.batch():  # the note "b" deleted at the source (its options are its content)
        coll.manifest._db.execute("UPDATE sources SET options = ? WHERE name = 'memo'", ('{"notes": {"a": "Apples are red."}}',))
    again = sync_source(coll, "memo")  # incremental: b explicitly removed, a unchanged
    assert (again.deleted, again.unchanged) == (1, 1) and set(_docs(coll, "source:memo")) == {"memo/a"}


@pytest.mark.slow  # CLI subprocesses
def test_the_sources_cli_adds_syncs_lists_and_removes(tmp_path, tiny_embedder):
    import json

    from conftest import run_cli

    home, share = tmp_path / "home", tmp_path / "share"
    share.mkdir()
    (share / "a.md").write_text("# A\n\nApples are red.")
    run_cli("sources", "add", "share", "-c", "cli", "--type", "folder", "-o", f"path={share}", "-o", "include=[**/*.md]",
            "--acl-group", "staff", "--every", "60", "--set", f"embedder.model={tiny_embedder}", home=home)
    bad = run_cli("sources", "add", "web", "-c", "cli", "--type", "web", "-o", "start=ftp://x", "--public",
                  home=home, check=False)
    assert bad.returncode != 0 and "is not an http(s) URL" in bad.stderr
    synced = json.loads(run_cli("sources", "sync", "-c", "cli", "--json", home=home).stdout)
    assert synced["share"]["indexed"] == 1
    listed = json.loads(run_cli("sources", "list", "-c", "cli", "--json", home=home).stdout)
    assert [(s["name"], s["every_s"], s["seen"], s["acl"]["groups"]) for s in listed] == [("share", 60.0, 1, ["staff"])]
    assert "synced" in run_cli("sources", "list", "-c", "cli", home=home).stdout
    gone = json.loads(run_cli("sources", "remove", "share", "-c", "cli", "--json", home=home).stdout)
    assert gone == {"removed": "share", "documents_deleted": 1}
    missing = run_cli("sources", "sync", "share", "-c", "cli", home=home, check=False)
    assert missing.returncode != 0 and "no source 'share'" in missing.stderr


@pytest.mark.slow  # a real server process, killed mid-sync
def test_a_server_killed_mid_sync_finishes_the_sync_exactly_after_a_restart(tmp_path, tiny_embedder):
    import signal
    import sys

    import httpx2 as httpx
    from conftest import run_cli
    from servers import free_port

    from ragtune.serve.keys import KeyStore

    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _commit(repo, {f"n{i:02d}.md": f"# Note {i}\n\n" + " ".join(f"Line {j} of note {i}." for j in range(12))
                   for i in range(40)}, "forty notes")
    home = tmp_path / "home"
    sets = [a for o in [f"embedder.model={tiny_embedder}", "ingest.batch_chunks=2", "chunking.chunk_size=24",
                        "chunking.chunk_overlap=4"]
            for a in ("--set", o)]
    for name in ("kb", "ref"):
        run_cli("sources", "add", "code", "-c", name, "--type", "git", "-o", f"repo={repo}", "--public", *sets, home=home)
    run_cli("sources", "sync", "code", "-c", "ref", home=home)
    store = KeyStore(home)
    admin = store.create("root", role="admin")[0]
    store.close()
    port = free_port()
    env = {**os.environ, "RAGTUNE_HOME": str(home)}

    def start() -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", "ragtune", "serve", "--port", str(port)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(300):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    return proc
            except httpx.TransportError:
                time.sleep(0.2)
        proc.kill()
        raise AssertionError("the server did not start")

    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {admin}"}, timeout=60)
    server = start()
    try:
        since = time.time()
        job = client.post("/v1/collections/kb/sources/code/sync").json()
        deadline = time.time() + 120
        while _indexed_since(home, "kb", since) < 5:
            assert time.time() < deadline and client.get(f"/v1/jobs/{job['id']}").json()["status"] != "done", \
                "the sync finished (or stalled) before it could be killed"
            time.sleep(0.02)
        os.kill(server.pid, signal.SIGKILL)
        server.wait()
        assert _snapshot(home, "kb") != _snapshot(home, "ref"), "killed part-way"
        server = start()  # the interrupted job is queued again on start and runs to the end
        for _ in range(600):
            status = client.get(f"/v1/jobs/{job['id']}").json()
            if status["status"] in ("done", "failed"):
                break
            time.sleep(0.1)
        assert status["status"] == "done", status
    finally:
        server.kill()
        server.wait()
        client.close()
    assert _snapshot(home, "kb") == _snapshot(home, "ref"), "none lost, none doubled"
