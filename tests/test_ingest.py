"""Incremental ingestion on a real store: add, edit, delete, relabel, bad files, idempotence."""

from __future__ import annotations

import json
from pathlib import Path

from ragtune.ingest.sync import ingest
from ragtune.retrieve import Searcher
from ragtune.types import Acl, Principal

PUBLIC = Acl(public=True)


def store_docs(coll) -> dict[str, set[str]]:
    """doc_id -> set of doc_hash values actually present in the store."""
    out: dict[str, set[str]] = {}
    for p in coll.store.scroll_payloads(["doc_id", "doc_hash"]):
        out.setdefault(p["doc_id"], set()).add(p["doc_hash"])
    return out


def write_corpus(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "leave.md").write_text("# Leave\n\nEmployees get 25 days of annual leave.")
    (root / "travel.txt").write_text("Book trains for trips shorter than four hours.")
    (root / "sub").mkdir(exist_ok=True)
    (root / "sub" / "it.html").write_text("<h1>Laptops</h1><p>Laptops are replaced every three years.</p>")


def test_incremental_add_edit_delete(tmp_path, make_tiny_collection):
    src = tmp_path / "kb"
    write_corpus(src)
    coll = make_tiny_collection()
    first = ingest(coll, src, PUBLIC)
    assert (first.seen, first.indexed, first.failed) == (3, 3, 0)
    total = coll.store.count()
    assert total == first.chunks == coll.manifest.stats()["chunks"]

    again = ingest(coll, src, PUBLIC)
    assert (again.indexed, again.updated, again.unchanged, again.chunks) == (0, 0, 3, 0)
    assert coll.store.count() == total

    (src / "leave.md").write_text("# Leave\n\nEmployees get 30 days of annual leave from 2027.")
    (src / "travel.txt").unlink()
    (src / "sub" / "new.md").write_text("# Parking\n\nParking permits are issued by facilities.")
    third = ingest(coll, src, PUBLIC)
    assert (third.indexed, third.updated, third.deleted, third.unchanged) == (1, 1, 1, 1)
    docs = store_docs(coll)
    assert set(docs) == {"kb/leave.md", "kb/sub/it.html", "kb/sub/new.md"}
    assert all(len(h) == 1 for h in docs.values()), "no chunk of an old version survives"
    assert docs["kb/leave.md"] == {coll.manifest.get("kb/leave.md").hash}
    hits = Searcher(coll).search("how many days of annual leave", Principal(), mode="bm25", k=1)
    assert "30 days" in hits[0].text
    assert coll.store.count() == coll.manifest.stats()["chunks"]


def test_relabel_changes_acl_without_reembedding(tmp_path, make_tiny_collection):
    src = tmp_path / "kb"
    write_corpus(src)
    coll = make_tiny_collection()
    ingest(coll, src, Acl(groups=("hr",)))
    assert coll.store.count(Principal("eve").tokens()) == 0
    report = ingest(coll, src, PUBLIC)
    assert (report.relabelled, report.chunks, report.indexed, report.updated) == (3, 0, 0, 0)
    assert coll.store.count(Principal("eve").tokens()) == coll.store.count()


def test_bad_files_do_not_stop_the_batch_and_keep_last_good_version(tmp_path, make_tiny_collection):
    src = tmp_path / "kb"
    write_corpus(src)
    (src / "broken.pdf").write_bytes(b"%PDF-1.4 garbage")
    (src / "photo.png").write_bytes(b"\x89PNG")
    coll = make_tiny_collection()
    report = ingest(coll, src, PUBLIC)
    assert report.indexed == 3 and report.skipped == 1
    assert [s for s, _ in report.failures] == [str(src / "broken.pdf")]
    # A file that was fine and later became unreadable keeps its indexed version.
    (src / "leave.md").write_bytes(b"\x00\x00binary now")
    report = ingest(coll, src, PUBLIC)
    assert str(src / "leave.md") in [s for s, _ in report.failures]
    assert report.deleted == 0 and "kb/leave.md" in store_docs(coll)
    last = coll.manifest.last_run()
    assert last["failed"] == 2 and {f["source"] for f in last["failures"]} == {str(src / "leave.md"), str(src / "broken.pdf")}


def test_jsonl_records_carry_their_own_acl(tmp_path, make_tiny_collection):
    path = tmp_path / "records.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [
        {"id": "r1", "text": "Quarterly revenue grew by 12 percent.", "acl": {"groups": ["finance"]}},
        {"id": "r2", "text": "The cafeteria opens at eight."},
    ]))
    coll = make_tiny_collection()
    report = ingest(coll, path, Acl(users=("ana",)))
    assert report.indexed == 2
    assert coll.store.count(Principal("bob", ("finance",)).tokens()) == coll.store.count(doc_id="r1")
    assert coll.store.count(Principal("ana").tokens()) == coll.store.count(doc_id="r2")


def test_beir_folder_ingests_only_its_corpus(tmp_path, make_tiny_collection):
    beir = tmp_path / "mini"
    beir.mkdir()
    (beir / "corpus.jsonl").write_text(json.dumps({"_id": "d1", "title": "T", "text": "Aspirin thins blood."}) + "\n")
    (beir / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "does aspirin thin blood"}) + "\n")
    coll = make_tiny_collection()
    report = ingest(coll, beir, PUBLIC)
    assert report.seen == 1 and set(store_docs(coll)) == {"d1"}


def test_document_whose_acl_becomes_empty_leaves_the_index(tmp_path, make_tiny_collection):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({"id": "memo", "text": "Layoffs planned for May.", "acl": {"public": True}}))
    coll = make_tiny_collection()
    ingest(coll, path, Acl())
    assert coll.store.count(Principal().tokens()) >= 1
    path.write_text(json.dumps({"id": "memo", "text": "Layoffs planned for May.", "acl": {}}))
    report = ingest(coll, path, Acl())
    assert report.deleted == 1 and "empty ACL" in report.failures[0][1]
    assert coll.store.count() == 0 and coll.manifest.get("memo") is None
