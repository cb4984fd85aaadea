"""Put a QA dataset's contexts into a collection, so its questions can be asked against it.

Each distinct context becomes one public document ``<article>-p<paragraph>`` (the id
``ragtune.data.spans`` uses to find the gold chunk), written as a stable BEIR corpus under
``$RAGTUNE_HOME/datasets/<name>/`` so that re-runs are incremental (nothing new is embedded).

Example:
    >>> from ragtune.ingest.datasets import index_contexts
    >>> report = index_contexts(collection, load_squad("covidqa-dev.json"), "covidqa")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ragtune.collection import Collection
from ragtune.config import ragtune_home
from ragtune.data.beir import corpus_record, write_corpus
from ragtune.data.spans import context_doc_id
from ragtune.data.squad import QAExample
from ragtune.errors import InputError
from ragtune.ingest.sync import IngestReport, ingest
from ragtune.types import Acl


def index_contexts(collection: Collection, examples: list[QAExample], name: str, home: str | Path | None = None,
                   on_progress: Callable[[str, int, int], None] | None = None, acl: Acl | None = None) -> IngestReport:
    """Index each distinct context once, as a public document (``acl``: restricted data's own)."""
    folder = ragtune_home(home) / "datasets" / name
    seen: set[str] = set()
    records = []
    for ex in examples:
        doc_id = context_doc_id(ex)
        if doc_id not in seen:
            seen.add(doc_id)
            records.append(corpus_record(doc_id, ex.context, ex.title))
    write_corpus(folder, records)
    report = ingest(collection, folder, acl or Acl(public=True), on_progress)
    if report.failed:
        raise InputError(f"{report.failed} contexts failed to index, e.g. {report.failures[0]}")
    return report
