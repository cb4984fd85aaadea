"""Do the gate's candidates gain on real queries only where they trained? A diagnosis of the gate.

The gate's probes come from documents held out of training; a candidate that gains by taking in the
documents it trained on would gain on real queries about those documents and show nothing on the
probes. This splits each candidate's real-query Δ nDCG@10 (live vs candidate, hybrid, as
benchmarks/gate.py measures it) by whether the query's relevant document had a training question
("seen") or not ("unseen"), with a paired test in each part. It reads benchmarks/gate.py's cache
(its collections, index versions and real queries; run that first) and trains nothing.

Run from the repo root:  .venv/bin/python benchmarks/gate_seen.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import CACHE, RESULTS, table, write_report  # noqa: E402

from ragtune.collection.collection import Collection  # noqa: E402
from ragtune.data.beir import load_beir  # noqa: E402
from ragtune.evaluate.compare import compare_paired  # noqa: E402
from ragtune.evaluate.ir import per_query  # noqa: E402
from ragtune.gate import qrels_level, version_run  # noqa: E402

HOME = CACHE / "gate-home"
# (collection, real-query BEIR folder under gate-home, which truth it is)
TRUTHS = (("covidqa", "covidqa-beir", "real"), ("squad", "squad-beir", "real"), ("scifact", "scifact-slice", "real"),
          ("scifact", "scifact-design", "design: train claims"), ("squad-dev", "squad-dev-beir", "design"))


def trained_documents(coll: Collection, doc_of: dict[str, str]) -> set[str]:
    """Documents with a chunk that got a training question (benchmarks/gate.py's synthetic set)."""
    lines = (coll.dir / "synth" / "gate" / "qrels" / "train.tsv").read_text().splitlines()[1:]
    return {doc_of[line.split("\t")[1]] for line in lines if line}


def split_deltas(coll: Collection, folder: Path, versions: dict[str, str]) -> list[dict]:
    """Per candidate: Δ, p and queries over all real queries, the seen part and the unseen part."""
    doc_of = {c["chunk_id"]: c["doc_id"] for c in coll.chunks()}
    seen_docs = trained_documents(coll, doc_of)
    ds = load_beir(folder, "test")
    level = qrels_level(ds.qrels, set(doc_of))
    seen_ids = {c for c, d in doc_of.items() if d in seen_docs} if level == "chunk" else seen_docs
    seen = {q for q, rel in ds.qrels.items() if set(rel) & seen_ids}
    live = per_query(ds.qrels, version_run(coll, coll.live_version, ds.queries, level=level), ["nDCG@10"])["nDCG@10"]
    out = []
    for name, version in versions.items():
        cand = per_query(ds.qrels, version_run(coll, version, ds.queries, level=level), ["nDCG@10"])["nDCG@10"]
        row: dict = {"candidate": name}
        for part, qs in (("all", set(live)), ("seen", set(live) & seen), ("unseen", set(live) - seen)):
            c = compare_paired({q: live[q] for q in qs}, {q: cand[q] for q in qs}) if qs else None
            row[part] = {"queries": len(qs), "delta": c.delta if c else None, "p_value": c.p_value if c else None}
        out.append(row)
    return out


def cell(part: dict) -> str:
    return "" if part["delta"] is None else f"{part['delta']:+.4f} ({part['p_value']:.3f}, {part['queries']} q)"


def main() -> None:
    steps = json.loads((HOME / "steps.json").read_text())
    results = []
    for name, folder, truth in TRUTHS:
        prefix = f"{name}: train "
        versions = {k[len(prefix):-len(" + shadow")]: v["result"]["version"] for k, v in steps.items()
                    if k.startswith(prefix) and k.endswith(" + shadow")}
        if not versions or not (HOME / folder).exists():
            print(f"{name}: nothing of benchmarks/gate.py's in {HOME} (run it first); left out")
            continue
        coll = Collection.open(HOME, name)
        results += [{"corpus": name, "truth": truth, **r} for r in split_deltas(coll, HOME / folder, versions)]
        coll.close()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "gate_seen.json").write_text(json.dumps({"candidates": results}, indent=2))
    rows = [[r["corpus"], r["truth"], r["candidate"], cell(r["all"]), cell(r["seen"]), cell(r["unseen"])] for r in results]
    write_report("gate_seen", "Real-query gains where the candidate trained vs elsewhere", f"""
benchmarks/gate.py's candidates (its cache; nothing trained here). Δ nDCG@10 live → candidate (hybrid) on
the real queries (p: paired randomisation test, n), split by whether the query's relevant document had a
training question (seen) or not (unseen). The gate's probes come from unseen documents only.

{table(["corpus", "truth", "candidate", "all: Δ (p, n)", "seen", "unseen"], rows)}
""")


if __name__ == "__main__":
    main()
