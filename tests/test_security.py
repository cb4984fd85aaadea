"""Security regressions (issue 20): each test failed before its fix. Fast ones here; the ones that
need a real server process live beside the server fixture in test_serve.py."""

from __future__ import annotations

import stat

import pytest

from ragtune.config import PipelineConfig, redact_url

SECRET_URL = ["store.backend=pgvector", "store.url=postgresql://rt:s3cret-pw@db.internal:5432/rag"]


def test_pipeline_yaml_never_holds_store_secrets(tmp_path):
    cfg = PipelineConfig().with_overrides([*SECRET_URL, "store.api_key=k3y-value"])
    cfg.save(tmp_path / "pipeline.yaml")
    written = (tmp_path / "pipeline.yaml").read_text()
    assert "s3cret-pw" not in written and "k3y-value" not in written
    assert "postgresql://rt@db.internal:5432/rag" in written  # the rest of the address stays readable
    secrets = tmp_path / "secrets.json"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    back = PipelineConfig.load(tmp_path / "pipeline.yaml")
    assert back.store.url == cfg.store.url and back.store.api_key == "k3y-value"


def test_saving_without_secrets_removes_a_stale_secrets_file(tmp_path):
    PipelineConfig().with_overrides(SECRET_URL).save(tmp_path / "pipeline.yaml")
    PipelineConfig().save(tmp_path / "pipeline.yaml")
    assert not (tmp_path / "secrets.json").exists()
    assert PipelineConfig.load(tmp_path / "pipeline.yaml").store.url is None


def test_shown_pipeline_redacts_secrets_and_keeps_the_rest():
    shown = PipelineConfig().with_overrides([*SECRET_URL, "store.api_key=k3y-value"]).shown()
    assert shown["store"]["url"] == "postgresql://rt:***@db.internal:5432/rag"
    assert shown["store"]["api_key"] == "***"
    assert "s3cret-pw" not in repr(shown) and "k3y-value" not in repr(shown)
    assert PipelineConfig().shown()["store"]["api_key"] is None  # unset stays visibly unset


@pytest.mark.parametrize("url", ["postgresql://u:p%40ss@h/x", "postgresql://u:pw@/db?host=/run/pg"])
def test_redact_url_handles_encoded_and_socket_addresses(url):
    assert "pw" not in redact_url(url).replace("postgresql", "") and "p%40ss" not in redact_url(url)
    assert redact_url(url).endswith(url.rpartition("@")[2])


def test_unreadable_secrets_file_is_a_clear_error(tmp_path):
    from ragtune.config import ConfigError

    PipelineConfig().with_overrides(SECRET_URL).save(tmp_path / "pipeline.yaml")
    (tmp_path / "secrets.json").write_text("{not json")
    with pytest.raises(ConfigError, match="secrets.json.*PGPASSWORD"):
        PipelineConfig.load(tmp_path / "pipeline.yaml")


def test_acl_public_must_be_a_real_boolean():
    from ragtune.errors import InputError
    from ragtune.types import Acl

    for bad in ("false", "true", 0, 1, None):
        with pytest.raises(InputError, match="'public' must be true or false"):
            Acl.from_dict({"public": bad, "groups": ["hr"]})
    assert Acl.from_dict({"public": False, "groups": ["hr"]}).tokens() == ["group:hr"]


def test_record_acls_in_a_file_apply_only_when_asked(tmp_path, make_tiny_collection):
    import json

    from ragtune.ingest.sync import ingest
    from ragtune.types import Acl

    src = tmp_path / "docs.jsonl"
    src.write_text(json.dumps({"_id": "a", "text": "quarterly numbers", "acl": {"public": True}}) + "\n")
    coll = make_tiny_collection()
    hr = Acl(groups=("hr",))
    ingest(coll, src, hr, record_acls=False)
    assert coll.manifest.get("a").acl == hr.to_dict()  # the uploader's ACL, not the file's wider one
    ingest(coll, src, hr)  # the CLI's default: the operator's own files may carry ACLs
    assert coll.manifest.get("a").acl["public"] is True


def _job_file(home, **job):
    import json

    (home / "jobs").mkdir(parents=True, exist_ok=True)
    (home / "jobs" / f"{job['id']}.json").write_text(json.dumps(job))


def test_interrupted_jobs_rerun_in_submission_order_not_file_time(tmp_path):
    import os
    import threading

    from ragtune.serve.jobs import JobQueue

    base = {"collection": "c", "owner": "k", "files": ["files/a.md"]}
    _job_file(tmp_path, id="old", seq=1, status="running", acl={"public": True}, **base)
    _job_file(tmp_path, id="new", seq=2, status="queued", acl={"groups": ["hr"]}, **base)
    os.utime(tmp_path / "jobs" / "new.json", (1, 1))  # the old job's progress saves made it the newer file
    ran, done = [], threading.Event()

    def runner(job, on_progress):
        ran.append(job.id)
        if len(ran) == 2:
            done.set()
        return {}

    q = JobQueue(tmp_path, runner)
    assert done.wait(10)
    q.stop()
    assert ran == ["old", "new"]
    assert q.submit("c", "k", [], {"public": True}).seq == 3  # numbering goes on after a restart


def test_an_older_upload_never_overwrites_a_newer_ones_acl(home, make_tiny_collection):
    """The job that restricted a file is done; an older job that made it public re-runs after a
    restart: it must leave that file to the newer job, and ingest only its own copy of the rest."""
    from ragtune.serve.state import ServerState

    make_tiny_collection("c").close()
    srv = ServerState(home)
    try:
        staged = srv.staging_dir("c", "newjob") / "files"
        staged.mkdir(parents=True)
        (staged / "a.md").write_text("Salaries are confidential.")
        srv.jobs.submit("c", "k", ["files/a.md"], {"groups": ["hr"]}, job_id="newjob")
        assert srv.jobs.wait("newjob").status == "done"
        assert not srv.staging_dir("c", "newjob").exists()  # staged copies go once ingested
    finally:
        srv.close()
    old = srv.staging_dir("c", "oldjob") / "files"
    old.mkdir(parents=True)
    (old / "a.md").write_text("Salaries are public.")
    (old / "b.md").write_text("The canteen opens at noon.")
    _job_file(home, id="oldjob", seq=0, status="running", collection="c", owner="k",
              files=["files/a.md", "files/b.md"], acl={"public": True})
    srv = ServerState(home)
    try:
        job = srv.jobs.wait("oldjob")
        assert job.status == "done", job.error
        assert job.result["superseded"] == [{"source": "a.md", "by_job": "newjob"}]
        manifest = srv.handle("c").collection.manifest
        assert manifest.get("a.md").acl["groups"] == ["hr"] and not manifest.get("a.md").acl["public"]
        assert manifest.get("b.md").acl["public"] is True
        assert (srv.upload_dir("c") / "files" / "a.md").read_text() == "Salaries are confidential."
    finally:
        srv.close()


def test_collection_names_with_a_trailing_newline_are_refused(home):
    from ragtune.collection import Collection
    from ragtune.errors import InputError

    with pytest.raises(InputError, match="invalid collection name"):
        Collection.create(home, "docs\n")


def test_record_metadata_keys_that_shadow_fields_do_not_fail_the_file(tmp_path):
    import json

    from ragtune.ingest.loaders import load_file

    src = tmp_path / "r.jsonl"
    src.write_text(json.dumps({"_id": "a", "text": "t", "metadata": {"title": "x", "text": "y", "path": "z"}}) + "\n")
    result = load_file(src, "r.jsonl")
    assert not result.failures and result.documents[0].metadata["path"] == "z"


def test_stopping_the_job_queue_finishes_the_running_job_and_starts_no_other(tmp_path):
    import threading
    import time

    from ragtune.serve.jobs import JobQueue

    started, release = threading.Event(), threading.Event()

    def runner(job, on_progress):
        started.set()
        release.wait(10)
        time.sleep(0.2)
        return {"ok": True}

    q = JobQueue(tmp_path, runner)
    first = q.submit("c", "k", [], {"public": True})
    second = q.submit("c", "k", [], {"public": True})
    assert started.wait(10)
    threading.Timer(0.3, release.set).start()
    q.stop()
    assert q.get(first.id).status == "done"
    assert q.get(second.id).status == "queued"  # runs after the next start, not failed on a closed collection
    again = JobQueue(tmp_path, lambda job, p: {"ok": True})
    assert again.wait(second.id).status == "done"
    again.stop()


def test_rollback_replays_deletions_relabels_and_new_documents(tmp_path, make_tiny_collection, tiny_embedder):
    """The old version still held a deleted document and the public label of one narrowed to hr."""
    from ragtune.collection.shadow import build_shadow, promote, rollback
    from ragtune.ingest.sync import ingest, remove_document
    from ragtune.retrieve import Searcher
    from ragtune.types import Acl, Principal

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "pay.md").write_text("Salary bands for engineers, confidential.")
    (docs / "old.md").write_text("The retired travel policy for contractors.")
    coll = make_tiny_collection()
    ingest(coll, docs, Acl(public=True))
    promote(coll, build_shadow(coll, tiny_embedder))  # live: v2; v1 keeps its chunks on disk
    (docs / "old.md").unlink()
    ingest(coll, docs, Acl(groups=("hr",)))  # old.md deleted, pay.md narrowed to hr
    (tmp_path / "new.md").write_text("The new canteen menu.")
    ingest(coll, tmp_path / "new.md", Acl(public=True))
    remove_document(coll, "new.md")
    ingest(coll, tmp_path / "new.md", Acl(public=True))  # and back: a document the old version never had
    assert rollback(coll) == "v1"
    seen = {h.doc_id for h in Searcher(coll).search("salary travel canteen policy", Principal(), mode="hybrid", k=10)}
    assert seen == {"new.md"}
    hr = {h.doc_id for h in Searcher(coll).search("salary bands", Principal(groups=("hr",)), mode="bm25", k=10)}
    assert "docs/pay.md" in hr
    assert coll.store.count(doc_id="docs/old.md") == 0


def _mixed(tmp_path, make_tiny_collection):
    from ragtune.ingest.sync import ingest
    from ragtune.types import Acl

    (tmp_path / "pub").mkdir()
    (tmp_path / "pub" / "menu.md").write_text("The canteen serves soup on Mondays.")
    (tmp_path / "hr").mkdir()
    (tmp_path / "hr" / "case.md").write_text("Confidential settlement code ZEBRA-QUARTZ-7781.")
    coll = make_tiny_collection()
    ingest(coll, tmp_path / "pub", Acl(public=True))
    ingest(coll, tmp_path / "hr", Acl(groups=("hr",)))
    return coll


def test_a_scoped_handle_gives_training_only_its_scopes_text(tmp_path, make_tiny_collection):
    from ragtune.types import Principal, Scope

    coll = _mixed(tmp_path, make_tiny_collection)
    with coll.scoped(["public"]) as public:
        assert {c["doc_id"] for c in public.chunks()} == {"pub/menu.md"}
        assert public.acl_tokens() == ["public"] and public.data_scope() == Scope.of([["public"]])
        assert all("ZEBRA" not in c["text"] for c in public.chunks())
    with coll.scoped(["group:hr"]) as hr:
        assert {c["doc_id"] for c in hr.chunks()} == {"hr/case.md"}
        scope = hr.data_scope()
    assert scope.allows(Principal(groups=("hr",))) and not scope.allows(Principal(groups=("eng",)))
    assert coll.readable_by_all_readers(Scope.of([["public"]]))
    assert not coll.readable_by_all_readers(scope)  # the live models serve non-hr readers too
    assert coll.store.count() == 2  # the views borrowed the store and left it open


def test_a_reader_trained_on_restricted_or_unknown_text_is_never_the_collections_reader(tmp_path, make_tiny_collection):
    from ragtune.adapt import reader_refusal
    from ragtune.types import Scope

    coll = _mixed(tmp_path, make_tiny_collection)
    assert reader_refusal(coll, Scope.of([["public"]])) is None
    assert "not every reader" in reader_refusal(coll, Scope.of([["group:hr"]]))
    assert "unknown" in reader_refusal(coll, None)  # a file with no scope record, not declared public
    assert reader_refusal(coll, Scope.of([["public"], ["group:hr"]])) is not None  # public + hr files together


def test_an_index_embedded_by_a_model_trained_on_restricted_text_is_never_promoted(tmp_path, make_tiny_collection,
                                                                                    tiny_embedder):
    import json
    import shutil

    from ragtune.collection.shadow import build_shadow, promote
    from ragtune.errors import StateError

    coll = _mixed(tmp_path, make_tiny_collection)
    built = {}
    for who in ("hr", "public"):  # the registry's meta.json, as `ragtune train embedder` writes it
        model = shutil.copytree(tiny_embedder, tmp_path / f"emb-{who}")
        (model / "meta.json").write_text(json.dumps({"version": who, "scope": [["group:hr" if who == "hr" else "public"]]}))
        built[who] = build_shadow(coll, str(model))
    live = coll.live_version
    with pytest.raises(StateError, match="not every reader"):
        promote(coll, built["hr"])  # `ragtune models promote` goes through here too
    assert coll.live_version == live
    promote(coll, built["public"])
    assert coll.live_version == built["public"]


def test_adapt_refuses_a_scope_with_no_text(tmp_path, make_tiny_collection):
    from ragtune.adapt import AdaptConfig, adapt
    from ragtune.errors import InputError

    coll = _mixed(tmp_path, make_tiny_collection)
    with pytest.raises(InputError, match="no chunks readable with \\['group:legal'\\]"):
        adapt(coll, None, AdaptConfig(scope=("group:legal",)))


def test_synthetic_answers_keep_only_in_scope_chunks_and_record_the_scope(tmp_path):
    import json

    from ragtune.synth.answers import write_squad
    from ragtune.synth.scope import read_scope
    from ragtune.types import Principal

    triples = tmp_path / "triples.jsonl"
    rows = [{"chunk_id": cid, "doc_id": cid, "title": "", "context": f"{cid} text", "question": "q?",
             "answer": "text", "answer_start": len(cid) + 1, "dropped": None} for cid in ("pub#0", "hr#0")]
    triples.write_text("\n".join(json.dumps(r) for r in rows) + "\n")  # an earlier, unscoped run wrote both
    report = write_squad(triples, tmp_path / "squad.json", {"pub#0": ["public"]})
    assert report.kept == 1 and "hr#0" not in (tmp_path / "squad.json").read_text()
    scope = read_scope(tmp_path / "squad.json")
    assert scope.public and scope.allows(Principal())


def test_restricted_training_contexts_are_indexed_for_their_readers_only(home, make_tiny_collection):
    from ragtune.data.squad import QAExample
    from ragtune.ingest.datasets import index_contexts
    from ragtune.retrieve import Searcher
    from ragtune.types import Acl, Principal

    coll = make_tiny_collection()
    ex = QAExample("q1", "What is the code?", "The settlement code is ZEBRA-QUARTZ-7781.", ["ZEBRA-QUARTZ-7781"], [23],
                   title="case", article_id="case", paragraph_index=0)
    index_contexts(coll, [ex], "hr-data", home, acl=Acl(groups=("hr",)))
    assert not Searcher(coll).search("settlement code", Principal(groups=("eng",)), mode="bm25", k=5)
    assert Searcher(coll).search("settlement code", Principal(groups=("hr",)), mode="bm25", k=5)


def test_an_adapter_with_no_recorded_scope_can_be_given_one_and_a_scope_only_narrowed(home):
    import json

    from conftest import run_cli
    from ragtune.models.adapters import AdapterRegistry

    folder = AdapterRegistry(home).root / "legacy"
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text(json.dumps({"name": "legacy", "base": "SmolLM2-135M-Instruct"}))
    run_cli("adapters", "scope", "legacy", "--reader", "group:hr", "--reader", "group:eng", home=home)
    assert AdapterRegistry(home).get("legacy")["scope"] == [["group:eng", "group:hr"]]
    wider = run_cli("adapters", "scope", "legacy", "--reader", "public", home=home, check=False)
    assert wider.returncode != 0 and "only narrowing" in wider.stderr + wider.stdout
    run_cli("adapters", "scope", "legacy", "--reader", "group:hr", home=home)
    assert AdapterRegistry(home).get("legacy")["scope"] == [["group:hr"]]
