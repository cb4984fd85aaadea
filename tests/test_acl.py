"""ACL isolation, as a property: no search ever returns a chunk its principal may not see.

Documents get random ACLs (public / users / groups); Hypothesis draws principals, queries and
modes. Beyond "every hit is visible", a dense search asked for more results than exist must
return *exactly* the visible chunks: with an after-the-fact filter it would return fewer.
"""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ragtune.collection import Collection
from ragtune.config import PipelineConfig
from ragtune.ingest.sync import ingest
from ragtune.retrieve import Searcher
from ragtune.types import Acl, Principal

USERS = [f"u{i}" for i in range(6)]
GROUPS = [f"g{i}" for i in range(5)]
WORDS = "invoice vaccine laptop holiday salary printer parking security budget contract audit travel".split()


def random_acl(rng: random.Random) -> dict:
    return {
        "public": rng.random() < 0.15,
        "users": rng.sample(USERS, rng.choice([0, 0, 1, 2])),
        "groups": rng.sample(GROUPS, rng.choice([0, 1, 1, 2])),
    }


def acl_records(seed: int, n: int, max_words: int) -> list[dict]:
    """``n`` JSONL records of random words, each with a random non-empty ACL (shared with
    test_backends.py, which runs the same world on every store backend)."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        acl = random_acl(rng)
        if not (acl["public"] or acl["users"] or acl["groups"]):
            acl["users"] = [rng.choice(USERS)]
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, max_words)))
        records.append({"id": f"d{i}", "text": text, "acl": acl})
    return records


@pytest.fixture(scope="module")
def acl_world(tmp_path_factory, tiny_embedder):
    src = tmp_path_factory.mktemp("acl") / "docs.jsonl"
    records = acl_records(1234, 60, 60)
    src.write_text("\n".join(json.dumps(r) for r in records))
    home = tmp_path_factory.mktemp("acl-home")
    # The tiny random embedder: isolation must hold whatever the vectors are.
    coll = Collection.create(home, "acl", PipelineConfig().with_overrides(
        [f"embedder.model={tiny_embedder}", "chunking.chunk_size=16", "chunking.chunk_overlap=0"]))
    report = ingest(coll, src, Acl())
    assert report.failed == 0
    acls = {r["id"]: Acl.from_dict(r["acl"]) for r in records}
    chunks_of = {}
    for p in coll.store.scroll_payloads(["doc_id"]):
        chunks_of.setdefault(p["doc_id"], 0)
        chunks_of[p["doc_id"]] += 1
    yield coll, acls, chunks_of
    coll.close()


principals = st.builds(
    Principal,
    user=st.one_of(st.none(), st.sampled_from(USERS + ["stranger"])),
    groups=st.lists(st.sampled_from(GROUPS + ["g-unknown"]), max_size=3, unique=True).map(tuple),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(principal=principals, words=st.lists(st.sampled_from(WORDS), min_size=1, max_size=4),
       mode=st.sampled_from(["dense", "bm25", "hybrid"]), k=st.integers(1, 40))
def test_no_search_returns_an_invisible_chunk(acl_world, principal, words, mode, k):
    coll, acls, chunks_of = acl_world
    hits = Searcher(coll).search(" ".join(words), principal, mode=mode, k=k)
    assert all(acls[h.doc_id].visible_to(principal) for h in hits)
    visible_chunks = sum(n for d, n in chunks_of.items() if acls[d].visible_to(principal))
    assert len(hits) <= min(k, visible_chunks)
    assert coll.store.count(principal.tokens()) == visible_chunks  # never counted either
    if mode == "dense":  # dense ranks every visible chunk: a full page means the filter ran inside
        assert len(hits) == min(k, visible_chunks)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(principal=principals)
def test_exhaustive_dense_search_returns_exactly_the_visible_set(acl_world, principal):
    coll, acls, chunks_of = acl_world
    total = sum(chunks_of.values())
    hits = Searcher(coll).search("budget", principal, mode="dense", k=total + 5)
    assert {h.doc_id for h in hits} == {d for d in chunks_of if acls[d].visible_to(principal)}


def test_principal_with_nothing_sees_only_public(acl_world):
    coll, acls, chunks_of = acl_world
    public_docs = {d for d, a in acls.items() if a.public}
    assert public_docs, "the seeded world has public documents"
    hits = Searcher(coll).search("invoice audit", Principal(), mode="hybrid", k=100)
    assert {h.doc_id for h in hits} <= public_docs


@pytest.fixture(scope="module")
def mcp_world(tmp_path_factory, tiny_embedder):
    """The same kind of world behind the MCP tools (in-process SDK client), as the server runs them."""
    from ragtune.serve.state import ServerState

    src = tmp_path_factory.mktemp("acl-mcp") / "docs.jsonl"
    records = acl_records(99, 40, 40)
    src.write_text("\n".join(json.dumps(r) for r in records))
    home = tmp_path_factory.mktemp("acl-mcp-home")
    coll = Collection.create(home, "acl", PipelineConfig().with_overrides(
        [f"embedder.model={tiny_embedder}", "chunking.chunk_size=16", "chunking.chunk_overlap=0"]))
    assert ingest(coll, src, Acl()).failed == 0
    coll.close()
    server = ServerState(home)
    yield server, {r["id"]: Acl.from_dict(r["acl"]) for r in records}
    server.close()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(user=st.sampled_from(USERS + ["stranger"]),
       groups=st.lists(st.sampled_from(GROUPS + ["g-unknown"]), max_size=3, unique=True).map(tuple),
       words=st.lists(st.sampled_from(WORDS), min_size=1, max_size=4), mode=st.sampled_from(["dense", "bm25", "hybrid"]))
def test_no_mcp_search_returns_an_invisible_chunk(mcp_world, user, groups, words, mode):
    import anyio
    from mcp import Client

    from ragtune.serve.keys import KeyInfo
    from ragtune.serve.mcp_server import build

    server, acls = mcp_world
    caller = KeyInfo(id="prop", user=user, groups=groups, role="user", created=0.0)

    async def run():
        async with Client(build(server, caller)) as client:
            r = await client.call_tool("search", {"collection": "acl", "query": " ".join(words), "k": 40, "mode": mode})
            assert not r.is_error, r.content
            return r.structured_content or json.loads(r.content[0].text)

    hits = anyio.run(run)["hits"]
    assert all(acls[h["doc_id"]].visible_to(caller.principal) for h in hits)
    if mode == "dense":  # dense ranks every visible chunk: as many as it may see, up to k
        visible = [d for d in acls if acls[d].visible_to(caller.principal)]
        assert (len(hits) > 0) == bool(visible)
