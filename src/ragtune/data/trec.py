"""TREC run and qrels files: the exchange format between retrieval and scoring.

Reading goes through ``ir-measures``; writing is the six-column run format
``qid Q0 docid rank score tag``.

Example:
    >>> import tempfile, pathlib
    >>> from ragtune.data.trec import read_run, write_run
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "bm25.trec"
    >>> write_run({"q1": {"d7": 3.5, "d2": 1.0}}, path, tag="bm25")
    >>> path.read_text().splitlines()[0]
    'q1 Q0 d7 1 3.5 bm25'
    >>> read_run(path)
    {'q1': {'d7': 3.5, 'd2': 1.0}}
"""

from __future__ import annotations

from pathlib import Path

Run = dict[str, dict[str, float]]
Qrels = dict[str, dict[str, int]]


def write_run(run: Run, path: str | Path, tag: str = "ragtune") -> None:
    lines = []
    for qid in sorted(run):
        ranked = sorted(run[qid].items(), key=lambda kv: (-kv[1], kv[0]))
        lines += [f"{qid} Q0 {did} {rank} {score:.6g} {tag}" for rank, (did, score) in enumerate(ranked, start=1)]
    Path(path).write_text("\n".join(lines) + "\n")


def read_run(path: str | Path) -> Run:
    import ir_measures

    run: Run = {}
    for r in ir_measures.read_trec_run(str(path)):
        run.setdefault(r.query_id, {})[r.doc_id] = float(r.score)
    return run


def write_qrels(qrels: Qrels, path: str | Path) -> None:
    lines = [f"{q} 0 {d} {rel}" for q in sorted(qrels) for d, rel in sorted(qrels[q].items())]
    Path(path).write_text("\n".join(lines) + "\n")


def read_qrels(path: str | Path) -> Qrels:
    import ir_measures

    qrels: Qrels = {}
    for r in ir_measures.read_trec_qrels(str(path)):
        qrels.setdefault(r.query_id, {})[r.doc_id] = int(r.relevance)
    return qrels
