"""Connectors on local sources of >= 1,000 items: throughput, freshness under continuous sync,
incremental re-crawls, and kill -9 mid-sync (10 times, exact).

Everything is real and on this machine: the default pipeline (MiniLM, Qdrant Edge), a folder of
1,000 Markdown files watched with watchdog, a git repository of 1,000 files built over 20 commits,
a 1,000-page web site served over loopback HTTP with ETags, a 1,000-message mbox, and the `ragtune`
CLI killed with SIGKILL at a random point of a sync.

Run from the repo root:  .venv/bin/python benchmarks/connectors.py [--items 1000] [--trials 20] [--kills 10]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import mailbox
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import RESULTS, git_commit, percentiles, table, write_report  # noqa: E402

from ragtune.collection import Collection  # noqa: E402
from ragtune.ingest.sources import add_source, sync_source  # noqa: E402
from ragtune.ingest.watch import SourceWatcher  # noqa: E402
from ragtune.types import Acl  # noqa: E402

TOPICS = ["leave", "travel", "laptops", "parking", "security", "printers", "budgets", "hiring", "canteen", "training"]


def note(i: int, version: int = 1) -> str:
    t = TOPICS[i % len(TOPICS)]
    return (f"# {t.title()} note {i}\n\n" + " ".join(
        f"Rule {j} (v{version}) for {t} in team {i}: write down every {t} decision and who made it." for j in range(5)))


def _wait(check, timeout: float = 120.0) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise TimeoutError("no sync within the timeout")
        time.sleep(0.01)
    return time.monotonic() - start


def _fresh(coll: Collection, doc_id: str, old_hash: str | None):
    def check() -> bool:
        rec = coll.manifest.get(doc_id)
        return rec is not None and rec.state == "indexed" and rec.hash != old_hash
    return check


def _git(repo: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@x"}
    subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)


def timed_syncs(coll: Collection, name: str):
    """(first report, its seconds, second report, its seconds): a first sync, then one with nothing changed."""
    t0 = time.perf_counter()
    first = sync_source(coll, name)
    t1 = time.perf_counter()
    again = sync_source(coll, name)
    return first, t1 - t0, again, time.perf_counter() - t1


def watch(coll: Collection) -> tuple[SourceWatcher, threading.Thread]:
    watcher = SourceWatcher(coll)  # the defaults a user gets: 0.5 s debounce
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()
    return watcher, thread


def freshness(coll: Collection, change, doc_id: str, trials: int) -> list[float]:
    """Seconds from a change at the source until the changed document is indexed (searchable)."""
    lags = []
    for t in range(trials):
        old = coll.manifest.get(doc_id(t))
        change(t)
        lags.append(_wait(_fresh(coll, doc_id(t), old.hash if old else None)))
        time.sleep(0.3)  # let the watcher settle between trials
    return lags


# -- folder -----------------------------------------------------------------------------------------
def bench_folder(home: Path, work: Path, n: int, trials: int) -> dict:
    root = work / "folder"
    root.mkdir()
    for i in range(n):
        (root / f"n{i:04d}.md").write_text(note(i))
    with Collection.create(home, "folder") as coll:
        add_source(coll, "share", "folder", {"path": str(root)}, Acl(public=True))
        first, full_s, again, resync_s = timed_syncs(coll, "share")
        assert first.indexed == n and again.unchanged == n
        watcher, thread = watch(coll)
        time.sleep(1.0)
        try:
            lags = freshness(coll, lambda t: (root / f"n{t:04d}.md").write_text(note(t, 100 + t)),
                             lambda t: f"folder/n{t:04d}.md", trials)
        finally:
            watcher.stop()
            thread.join()
    p50, p95 = (ms / 1000 for ms in percentiles(lags))
    return {"items": n, "first_sync_s": round(full_s, 2), "items_per_s": round(n / full_s, 1),
            "resync_unchanged_s": round(resync_s, 3), "freshness_p50_s": round(p50, 3), "freshness_p95_s": round(p95, 3),
            "trials": trials}


# -- git --------------------------------------------------------------------------------------------
def make_repo(repo: Path, n: int, commits: int) -> None:
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    per = n // commits
    for c in range(commits):
        for i in range(c * per, (c + 1) * per):
            (repo / "notes" / f"{i % 10}").mkdir(parents=True, exist_ok=True)
            (repo / "notes" / f"{i % 10}" / f"n{i:04d}.md").write_text(note(i))
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "-m", f"batch {c}")


def bench_git(home: Path, work: Path, n: int, trials: int) -> dict:
    repo = work / "repo"
    make_repo(repo, n, 20)
    with Collection.create(home, "git") as coll:
        add_source(coll, "code", "git", {"repo": str(repo)}, Acl(public=True), every_s=1.0)
        t0 = time.perf_counter()
        first = sync_source(coll, "code")
        full_s = time.perf_counter() - t0
        assert first.indexed == n, first
        path = lambda t: f"notes/{t % 10}/n{t:04d}.md"  # noqa: E731

        def change(t: int) -> None:
            (repo / path(t)).write_text(note(t, 100 + t))
            _git(repo, "commit", "-q", "-am", f"edit {t}")

        # One commit of 10 edits, synced on demand: the incremental sync's own cost.
        for t in range(trials, trials + 10):
            (repo / path(t)).write_text(note(t, 500))
        _git(repo, "commit", "-q", "-am", "ten edits")
        t0 = time.perf_counter()
        inc = sync_source(coll, "code")
        inc_s = time.perf_counter() - t0
        assert inc.updated == 10 and inc.seen == 10, inc
        watcher, thread = watch(coll)
        time.sleep(1.5)
        try:
            lags = freshness(coll, change, lambda t: f"code/{path(t)}", trials)
        finally:
            watcher.stop()
            thread.join()
    p50, p95 = (ms / 1000 for ms in percentiles(lags))
    return {"items": n, "commits": 20, "first_sync_s": round(full_s, 2), "items_per_s": round(n / full_s, 1),
            "incremental_10_files_s": round(inc_s, 3), "poll_every_s": 1.0,
            "freshness_p50_s": round(p50, 3), "freshness_p95_s": round(p95, 3), "trials": trials}


# -- web --------------------------------------------------------------------------------------------
class Site:
    """A generated site: /, 50 section pages, n leaf pages; ETag + 304; logs (path, status)."""

    def __init__(self, n: int):
        sections = 50
        self.pages: dict[str, str] = {"/": self._html("Home", "Welcome.", [f"/s{s}" for s in range(sections)])}
        for s in range(sections):
            self.pages[f"/s{s}"] = self._html(f"Section {s}", f"Section {s}.",
                                              [f"/p{i}" for i in range(n) if i % sections == s])
        for i in range(n):
            self.pages[f"/p{i}"] = self._html(f"Page {i}", note(i), ["/"])
        self.pages["/robots.txt"] = "User-agent: *\nAllow: /\n"
        self.log: list[tuple[str, int]] = []
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                body = site.pages.get(self.path)
                if body is None:
                    site.log.append((self.path, 404))
                    self.send_response(404)
                    self.end_headers()
                    return
                data = body.encode()
                etag = '"' + hashlib.sha1(data).hexdigest() + '"'
                if self.headers.get("If-None-Match") == etag:
                    site.log.append((self.path, 304))
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.end_headers()
                    return
                site.log.append((self.path, 200))
                self.send_response(200)
                self.send_header("Content-Type", "text/plain" if self.path == "/robots.txt" else "text/html")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("ETag", etag)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def _html(title: str, body: str, links: list[str]) -> str:
        anchors = "".join(f"<li><a href='{href}'>{href}</a></li>" for href in links)
        return f"<html><head><title>{title}</title></head><body><main><h1>{title}</h1><p>{body}</p><ul>{anchors}</ul></main></body></html>"


def bench_web(home: Path, n: int) -> dict:
    site = Site(n)
    pages = len([p for p in site.pages if p != "/robots.txt"])
    try:
        with Collection.create(home, "web") as coll:
            add_source(coll, "site", "web", {"start": site.url + "/", "delay_s": 0}, Acl(public=True))
            t0 = time.perf_counter()
            first = sync_source(coll, "site")
            full_s = time.perf_counter() - t0
            assert first.indexed == pages, first
            site.log.clear()
            t0 = time.perf_counter()
            again = sync_source(coll, "site")
            recrawl_s = time.perf_counter() - t0
            full_fetches = sum(1 for p, s in site.log if s == 200 and p != "/robots.txt")
            for i in range(10):
                site.pages[f"/p{i}"] = site._html(f"Page {i}", note(i, 9), ["/"])
            site.log.clear()
            changed = sync_source(coll, "site")
            changed_fetches = sum(1 for p, s in site.log if s == 200 and p != "/robots.txt")
    finally:
        site.server.shutdown()
    return {"items": pages, "first_crawl_s": round(full_s, 2), "items_per_s": round(pages / full_s, 1),
            "recrawl_unchanged_s": round(recrawl_s, 2), "recrawl_unchanged_full_fetches": full_fetches,
            "recrawl_unchanged_full_fetch_fraction": round(full_fetches / pages, 4),
            "recrawl_unchanged_kept": again.unchanged, "recrawl_10_changed_full_fetches": changed_fetches,
            "recrawl_10_changed_updated": changed.updated}


# -- mailbox ----------------------------------------------------------------------------------------
def bench_mbox(home: Path, work: Path, n: int) -> dict:
    box = mailbox.mbox(work / "alice.mbox")
    for i in range(n):
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "bob@example.com", "alice@example.com", f"About {TOPICS[i % 10]} {i}"
        msg["Message-ID"] = f"<{i}@example.com>"
        msg.set_content(note(i))
        box.add(msg)
    box.flush()
    with Collection.create(home, "mail") as coll:
        add_source(coll, "mail", "mailbox", {"path": str(work / "alice.mbox"), "owner": "alice"}, Acl())
        first, full_s, again, resync_s = timed_syncs(coll, "mail")
    assert first.indexed == n and again.unchanged == n
    return {"items": n, "first_sync_s": round(full_s, 2), "items_per_s": round(n / full_s, 1),
            "resync_unchanged_s": round(resync_s, 2)}


def bench_imap(home: Path, n: int) -> dict:
    """A real Dovecot (Debian's package, on loopback): n messages appended, a first sync, then a
    sync with nothing new (every message kept by UID, none downloaded), then 10 new + 10 expunged."""
    import imaplib

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from servers import dovecot_server

    def message(i: int) -> bytes:
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "bob@example.com", "alice@example.com", f"About {TOPICS[i % 10]} {i}"
        msg["Message-ID"] = f"<imap-{i}@example.com>"
        msg.set_content(note(i))
        return msg.as_bytes()

    os.environ["BENCH_IMAP_PASSWORD"] = "secret"
    with dovecot_server() as port:
        imap = imaplib.IMAP4("127.0.0.1", port)
        imap.login("alice", "secret")
        for i in range(n):
            imap.append("INBOX", None, None, message(i))
        with Collection.create(home, "imap") as coll:
            add_source(coll, "inbox", "mailbox", {"imap_host": "127.0.0.1", "imap_port": port, "imap_ssl": False,
                                                  "username": "alice", "password_env": "BENCH_IMAP_PASSWORD"}, Acl())
            first, full_s, again, resync_s = timed_syncs(coll, "inbox")
            for i in range(n, n + 10):
                imap.append("INBOX", None, None, message(i))
            imap.select("INBOX")
            imap.store("1:10", "+FLAGS", "\\Deleted")
            imap.expunge()
            t0 = time.perf_counter()
            changed = sync_source(coll, "inbox")
            changed_s = time.perf_counter() - t0
        imap.logout()
    assert first.indexed == n and again.unchanged == n, (first, again)
    return {"items": n, "first_sync_s": round(full_s, 2), "items_per_s": round(n / full_s, 1),
            "resync_unchanged_s": round(resync_s, 2), "resync_unchanged_kept": again.unchanged,
            "ten_new_ten_expunged_s": round(changed_s, 2), "ten_new_ten_expunged": [changed.indexed, changed.deleted]}


# -- kill -9 ----------------------------------------------------------------------------------------
def _snapshot(home: Path, name: str):
    with Collection.open(home, name) as coll:
        stats = {k: v for k, v in coll.manifest.stats().items() if k != "last_indexed_at"}
        return sorted((p["point_id"], p["doc_hash"]) for p in coll.store.scroll_payloads(["doc_hash"])), stats


def _cli(home: Path, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "ragtune", *args], env={**os.environ, "RAGTUNE_HOME": str(home)},
                   check=True, capture_output=True)


def bench_kills(work: Path, runs: int, files: int) -> dict:
    """Each run: a git source synced by the CLI, killed with SIGKILL at a random point, re-run;
    its index must equal a clean sync's (same point ids and versions, same manifest counts)."""
    import sqlite3

    rng = random.Random(0)
    repo = work / "kill-repo"
    make_repo(repo, files, 4)
    ref_home = work / "kill-ref"
    sets = ["--set", "ingest.batch_chunks=8"]
    _cli(ref_home, "sources", "add", "code", "-c", "kb", "--type", "git", "-o", f"repo={repo}", "--public", *sets)
    _cli(ref_home, "sources", "sync", "code", "-c", "kb")
    reference = _snapshot(ref_home, "kb")
    out = []
    for run in range(runs):
        home = work / f"kill-{run}"
        _cli(home, "sources", "add", "code", "-c", "kb", "--type", "git", "-o", f"repo={repo}", "--public", *sets)
        target = rng.randint(1, files - 10)
        db = home / "collections" / "kb" / "manifest.sqlite"
        proc = subprocess.Popen([sys.executable, "-m", "ragtune", "sources", "sync", "code", "-c", "kb"],
                                env={**os.environ, "RAGTUNE_HOME": str(home)}, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        while proc.poll() is None:
            with sqlite3.connect(db, timeout=1) as con:
                done = con.execute("SELECT COUNT(*) FROM documents WHERE state='indexed'").fetchone()[0]
            if done >= target:
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.01)
        proc.wait()
        killed = proc.returncode == -signal.SIGKILL
        _cli(home, "sources", "sync", "code", "-c", "kb")
        points, stats = _snapshot(home, "kb")
        lost = len(set(reference[0]) - set(points))
        dup = len(points) - len(set(p for p, _ in points)) + len(set(points) - set(reference[0]))
        out.append({"run": run, "killed_after_docs": target, "killed": killed, "lost": lost, "duplicated": dup,
                    "exact": (points, stats) == reference})
        shutil.rmtree(home, ignore_errors=True)
    return {"runs": runs, "files": files, "exact": sum(r["exact"] for r in out),
            "killed": sum(r["killed"] for r in out), "lost": sum(r["lost"] for r in out),
            "duplicated": sum(r["duplicated"] for r in out), "detail": out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--trials", type=int, default=20, help="freshness trials per continuous-sync connector")
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--kill-files", type=int, default=120)
    ap.add_argument("--only", default="", help="comma-separated sections to (re)measure; the others keep their "
                                                "figures from the last connectors.json")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ragtune-connectors-"))
    home = work / "home"
    path = RESULTS / "connectors.json"
    results: dict = json.loads(path.read_text()) if args.only and path.exists() else {}
    only = {s for s in args.only.split(",") if s}
    sections = [("folder", lambda: bench_folder(home, work, args.items, args.trials)),
                ("git", lambda: bench_git(home, work, args.items, args.trials)),
                ("web", lambda: bench_web(home, args.items)),
                ("mailbox", lambda: bench_mbox(home, work, args.items)),
                ("imap", lambda: bench_imap(home, args.items)),
                ("kill_tests", lambda: bench_kills(work, args.kills, args.kill_files))]
    try:
        for name, run in sections:
            if only and name not in only:
                continue
            t0 = time.perf_counter()
            results[name] = run() | {"measured_at_commit": git_commit()}
            print(f"{name}: {json.dumps({k: v for k, v in results[name].items() if k != 'detail'})} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2))
    f, g, w, m, k = (results[x] for x in ("folder", "git", "web", "mailbox", "kill_tests"))
    i = results.get("imap")
    body = f"""
Default pipeline (all-MiniLM-L6-v2, Qdrant Edge); every source local and real. Items/s is the
first sync: reading, chunking, embedding and writing every item (embedding dominates).
Freshness: a change at the source until the changed document is indexed (searchable), under
continuous sync with the defaults (`ragtune sources watch`: folders by file events, 0.5 s
debounce; git by its schedule, `--every 1`), {f['trials']} trials each.

{table(["connector", "items", "first sync (s)", "items/s", "re-sync unchanged (s)", "freshness p50 (s)", "freshness p95 (s)"], [
    ["folder (watchdog)", f["items"], f["first_sync_s"], f["items_per_s"], f["resync_unchanged_s"], f["freshness_p50_s"], f["freshness_p95_s"]],
    ["git (20 commits of history)", g["items"], g["first_sync_s"], g["items_per_s"], "", g["freshness_p50_s"], g["freshness_p95_s"]],
    ["web (loopback site)", w["items"], w["first_crawl_s"], w["items_per_s"], w["recrawl_unchanged_s"], "", ""],
    ["mailbox (mbox)", m["items"], m["first_sync_s"], m["items_per_s"], m["resync_unchanged_s"], "", ""],
    *([["mailbox (IMAP, Dovecot)", i["items"], i["first_sync_s"], i["items_per_s"], i["resync_unchanged_s"], "", ""]] if i else [])])}

{f"- IMAP: a sync with nothing new keeps all {i['resync_unchanged_kept']} messages by UID without downloading one; 10 new + 10 expunged: {i['ten_new_ten_expunged'][0]} indexed, {i['ten_new_ten_expunged'][1]} deleted in {i['ten_new_ten_expunged_s']} s." if i else ""}
- Commit each row was measured at: {", ".join(f"{k} {v.get('measured_at_commit', '?')}" for k, v in results.items())}.
- git: one commit editing 10 of {g['items']} files syncs in {g['incremental_10_files_s']} s (only the diff is read).
- web re-crawl of the unchanged site: {w['recrawl_unchanged_full_fetches']} of {w['items']} pages fetched in full
  ({100 * w['recrawl_unchanged_full_fetch_fraction']:.1f}%, target ≤ 5%); every other page answered `304 Not Modified`
  and was kept ({w['recrawl_unchanged_kept']}). With 10 pages changed: {w['recrawl_10_changed_full_fetches']} full
  fetches, {w['recrawl_10_changed_updated']} documents updated.
- kill -9 mid-sync (the CLI syncing a {k['files']}-file git source, killed after a random number of documents, then
  re-run): **{k['exact']}/{k['runs']} exact** (same point ids and versions and manifest counts as a clean sync),
  {k['lost']} chunks lost, {k['duplicated']} duplicated; {k['killed']} of the runs were killed before finishing.

Targets: folder and git freshness p50 ≤ 5 s; web re-crawl of an unchanged 1,000-page site fetches ≤ 5% of pages in
full; 10/10 kill tests exact.
"""
    write_report("connectors", "Connectors: throughput, freshness, incremental re-crawl, kill -9", body)


if __name__ == "__main__":
    main()
