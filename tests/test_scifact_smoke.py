"""Retrieval smoke test on a real SciFact slice (../shared/data/scifact)."""

from __future__ import annotations

import random

import pytest

from conftest import SHARED_DATA
from ragtune.data.beir import load_beir
from ragtune.evaluate.ir import doc_run, score_run
from ragtune.ingest.sync import ingest
from ragtune.retrieve import Searcher
from ragtune.types import Acl, Principal

# Real models, real servers, subprocesses or training: `make test` runs them, `make test-fast` does not.
pytestmark = pytest.mark.slow

SCIFACT = SHARED_DATA / "scifact"


@pytest.mark.skipif(not SCIFACT.exists(), reason="../shared/data/scifact is not beside the repo")
def test_scifact_slice_all_modes_retrieve_relevant_abstracts(tmp_path, make_collection):
    import json

    ds = load_beir(SCIFACT, split="test")
    qids = sorted(ds.queries)[:40]
    relevant = {d for q in qids for d in ds.qrels[q]}
    distractors = random.Random(0).sample(sorted(set(ds.corpus) - relevant), 160)
    path = tmp_path / "corpus.jsonl"
    path.write_text("\n".join(json.dumps({"_id": d, **ds.corpus[d]}) for d in sorted(relevant) + distractors))
    coll = make_collection("scifact")
    report = ingest(coll, path, Acl(public=True))
    assert report.indexed == len(relevant) + 160 and report.failed == 0
    qrels = {q: ds.qrels[q] for q in qids}
    searcher = Searcher(coll)
    scores = {}
    for mode in ("dense", "bm25", "hybrid"):
        run = {q: doc_run(searcher.search(ds.queries[q], Principal(), mode=mode, k=30), 10) for q in qids}
        scores[mode] = score_run(qrels, run, ["nDCG@10"])["nDCG@10"]
    print(scores)
    # On 200 abstracts every mode should find most relevant ones; hybrid should not be the worst.
    assert min(scores.values()) > 0.6, scores
    assert scores["hybrid"] >= min(scores["dense"], scores["bm25"]), scores
