"""The CLI commands: ingest, search, status, collections list/show/delete, and their errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from typer.testing import CliRunner

from ragtune.cli import app

runner = CliRunner()


def cli(home, *args):
    return runner.invoke(app, [*args, "--home", str(home)], catch_exceptions=False)


def test_cli_lifecycle(tmp_path, home, tiny_embedder):
    src = tmp_path / "kb"
    src.mkdir()
    (src / "a.md").write_text("# Onboarding\n\nNew starters receive a laptop on day one.")
    (src / "bad.pdf").write_bytes(b"not a pdf")
    out = cli(home, "ingest", str(src), "-c", "kb", "--public", "--json", "--set", f"embedder.model={tiny_embedder}",
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


def test_set_is_per_call_and_configure_changes_the_pipeline(tmp_path, home, tiny_embedder):
    import yaml

    from ragtune.collection import Collection
    from ragtune.data.squad import QAExample, save_squad

    data = save_squad([QAExample("q1", "Who repairs laptops?", "The IT desk repairs laptops within a day.",
                                 ["The IT desk"], [0], article_id="it"),
                       QAExample("q2", "When is parking free?", "Parking is free after six in the evening.",
                                 ["after six in the evening"], [16], article_id="parking")], tmp_path / "qa.json")
    # The command that first creates the collection: --set applies to this run, and only what the
    # index is built with (chunking here) is bound.
    out = cli(home, "eval", "qa", "--dataset", str(data), "-c", "kb", "--set", "answer.mode=extractive",
              "--set", "chunking.chunk_size=96", "--set", f"embedder.model={tiny_embedder}", "--json")
    assert out.exit_code == 0, out.output
    bound = yaml.safe_load((home / "collections" / "kb" / "pipeline.yaml").read_text())
    assert bound["answer"]["mode"] == "auto" and bound["chunking"]["chunk_size"] == 96

    changed = json.loads(cli(home, "collections", "configure", "kb", "--set", "query.k=3",
                             "--set", "answer.mode=extractive", "--json").stdout)
    assert changed == {"query.k": {"old": 10, "new": 3}, "answer.mode": {"old": "auto", "new": "extractive"}}
    with Collection.open(home, "kb") as coll:
        assert coll.pipeline.query.k == 3 and coll.pipeline.answer.mode == "extractive"
    # What the index was built with cannot change in place: a clear error, nothing written.
    from ragtune.config import ConfigError

    with pytest.raises(ConfigError, match="built with different chunking settings"):
        cli(home, "collections", "configure", "kb", "--set", "chunking.chunk_size=64")
    assert yaml.safe_load((home / "collections" / "kb" / "pipeline.yaml").read_text())["chunking"]["chunk_size"] == 96


@pytest.mark.slow
def test_help_prints_only_help_and_user_errors_are_one_line(home):
    import subprocess
    import sys

    from tests.conftest import run_cli

    proc = subprocess.run([sys.executable, "-m", "ragtune", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "Usage:" in proc.stdout and "ingest" in proc.stdout and proc.stderr == ""
    # bitsandbytes warns on import on CPUs without its optional kernels package; the CLI silences it.
    quiet = subprocess.run([sys.executable, "-c", "from ragtune.cli import quiet_libraries; quiet_libraries(); "
                            "import bitsandbytes"], capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 0 and "kernels" not in quiet.stderr, quiet.stderr
    missing = run_cli("search", "x", "-c", "nope", home=home, check=False)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert missing.stderr.strip().startswith("error: no collection 'nope'")


@pytest.mark.slow  # real embedder over this repo's docs
def test_make_demo_answers_its_question_right_and_cited(tmp_path):
    """README's first command: `make demo` must end with a correct answer citing its source."""
    import re

    from conftest import run_cli

    repo = Path(__file__).resolve().parents[1]
    question = re.search(r'ragtune ask "([^"]+)" -c ragtune-docs', (repo / "Makefile").read_text()).group(1)
    run_cli("ingest", str(repo / "docs"), "-c", "ragtune-docs", "--public", home=tmp_path)
    answer = json.loads(run_cli("ask", question, "-c", "ragtune-docs", "--json", home=tmp_path).stdout)
    assert answer["mode"] == "extractive" and not answer["abstained"]
    cited = answer["citations"][0]
    assert cited["source"].endswith("getting-started.md")
    text = answer["text"].lower()
    assert "killed" in text and "no chunk lost" in text and "none duplicated" in text
    assert answer["span"]["text"] in answer["passages"][cited["number"] - 1]
