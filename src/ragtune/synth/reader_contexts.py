"""Reader training data as the reader meets questions at answer time: each question with the
chunks search returns for it, not with the one paragraph (or whole article) it was written on.

At answer time the span reader reads the top-k retrieved chunks and must pick the one that holds
the answer; a reader trained only on answer-bearing contexts never learns to say "not here" to a
near-miss chunk of the same topic, and on COVID-QA most of its wrong answers came from such a
chunk. So every question becomes (a) a positive per retrieved chunk that holds its answer
verbatim, with the answer's offset, and (b) "no answer" examples from the best-ranked retrieved
chunks that do not hold it (``negatives`` per question) — the DPR / FiD reader recipe, with the
collection's own search as the distractor source. Works the same on gold QA and on the
collection's synthetic QA (:mod:`ragtune.synth.reader_answers`), so it needs no labels.

The examples hold the text of every chunk they use; the returned :class:`~ragtune.types.Scope`
says whose text that is (train with it as ``scope`` so a reader is not served to someone who may
not read its training text).

Example:
    >>> from ragtune.synth.reader_contexts import retrieved_contexts
    >>> examples, scope = retrieved_contexts(collection, load_squad("reader-qa.json"), k=8)  # doctest: +SKIP
    >>> train_reader("models/reader", examples, "models/reader-retrieved")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable

from ragtune.collection import Collection
from ragtune.data.squad import QAExample
from ragtune.retrieve import Searcher
from ragtune.types import Scope, ServicePrincipal


def answer_offset(context: str, answers: list[str]) -> tuple[str, int] | None:
    """The first of ``answers`` found verbatim in ``context`` (case-insensitive when not exact) and
    where: what the span labels point at.

    >>> answer_offset("Ann wrote it in 1990.", ["in 1990", "1990"])
    ('in 1990', 13)
    >>> answer_offset("It dates from 1990.", ["From 1990"])
    ('from 1990', 9)
    >>> answer_offset("Nothing here.", ["1990"]) is None
    True
    """
    for answer in answers:
        if not answer.strip():
            continue
        start = context.find(answer)
        if start < 0:
            start = context.lower().find(answer.lower())
        if start >= 0:
            return context[start:start + len(answer)], start
    return None


def retrieved_contexts(collection: Collection, examples: list[QAExample], k: int = 8, negatives: int = 3,
                       searcher: Searcher | None = None,
                       on_progress: Callable[[str, int, int], None] | None = None) -> tuple[list[QAExample], Scope]:
    """Each answerable question of ``examples`` over its top ``k`` chunks: positives where a chunk
    holds an answer, "no answer" examples from up to ``negatives`` of the best-ranked chunks that do
    not. Returns the examples and the scope of the chunks they contain."""
    searcher = searcher or Searcher(collection)
    principal = ServicePrincipal(acl=tuple(collection.acl_tokens()))  # training reads every chunk; scope records whose
    acl_of = {c["chunk_id"]: c.get("acl", []) for c in collection.chunks()}
    out: list[QAExample] = []
    acls: list[list[str]] = []
    answerable = [ex for ex in examples if ex.answers]
    for n, ex in enumerate(answerable, start=1):
        misses = 0
        for rank, hit in enumerate(searcher.search(ex.question, principal, k=k)):
            found = answer_offset(hit.text, ex.answers)
            if found is None and misses >= negatives:
                continue
            misses += found is None
            answers, starts = ([found[0]], [found[1]]) if found else ([], [])
            out.append(QAExample(f"{ex.id}-r{rank}", ex.question, hit.text, answers, starts, hit.title, hit.doc_id,
                                 rank))
            acls.append(acl_of.get(hit.chunk_id, []))
        if on_progress:
            on_progress("questions searched", n, len(answerable))
    return out, Scope.of(acls)
