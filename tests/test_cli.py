"""The CLI commands: ingest, search, status, collections list/show/delete, and their errors."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from ragtune.cli import app

runner = CliRunner()


def cli(home, *args):
    return runner.invoke(app, [*args, "--home", str(home)], catch_exceptions=False)


def test_cli_lifecycle(tmp_path, home, embedder):
    src = tmp_path / "kb"
    src.mkdir()
    (src / "a.md").write_text("# Onboarding\n\nNew starters receive a laptop on day one.")
    (src / "bad.pdf").write_bytes(b"not a pdf")
    out = cli(home, "ingest", str(src), "-c", "kb", "--public", "--json",
              "--set", "query.k=2", "--set", "chunking.chunk_size=64")
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    assert report["indexed"] == 1 and report["failures"][0]["source"].endswith("bad.pdf")
    assert report["collection"]["documents"] == 1

    hits = json.loads(cli(home, "search", "what do new starters get", "-c", "kb", "--json").stdout)
    assert hits[0]["doc_id"] == "kb/a.md" and hits[0]["heading_path"] == ["Onboarding"]
    text = cli(home, "search", "laptop", "-c", "kb", "--mode", "bm25").stdout
    assert "kb/a.md > Onboarding" in text and "bm25#1" in text

    status = json.loads(cli(home, "status", "-c", "kb", "--json").stdout)
    assert status["documents"] == 1 and status["visible_chunks_in_store"] == status["chunks"] >= 1
    assert status["last_run"]["failed"] == 1
    assert "kb\t1 documents" in cli(home, "collections", "list").stdout
    shown = json.loads(cli(home, "collections", "show", "kb").stdout)
    assert shown["pipeline"]["chunking"]["chunk_size"] == 64 and shown["pipeline"]["query"]["k"] == 2

    assert cli(home, "collections", "delete", "kb", "--yes").exit_code == 0
    assert "no collections yet" in cli(home, "collections", "list").stdout


def test_cli_errors_name_the_problem(tmp_path, home):
    from ragtune.collection import CollectionNotFoundError

    try:
        cli(home, "search", "x", "-c", "nope")
    except CollectionNotFoundError as e:
        assert "no collection 'nope'" in str(e) and "ragtune ingest PATH -c nope" in str(e)
    else:
        raise AssertionError("searching a missing collection must fail")
    out = cli(home, "search", "x", "-c", "kb", "--mode", "fuzzy")
    assert out.exit_code == 2 and "--mode must be dense, bm25 or hybrid" in out.output
