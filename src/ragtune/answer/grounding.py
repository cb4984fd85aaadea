"""The grounding guard: every sentence of a generated answer must be supported by the passages it
cites, or it does not reach the user.

A small generator writes fluent text the passages do not say ("replaces the oldest part of the
output buffer with a random number generator"). Each answer sentence is scored against the
passages it cites (its own ``[n]`` markers; else those the answer cites; else every passage it
read) by one of two scorers built from what ragtune already runs:

- ``overlap``: the share of the sentence's content terms (the BM25 analyser's stemmed,
  stopword-free terms) found in one passage, and 0 when the sentence states a number or a name
  (a capitalised, all-caps or letters-and-digits word past the sentence's first) the passage does
  not — invented figures and names are the most harmful fabrication. Given the question, only the
  terms the sentence adds to it count: restating the question ("What was the T-cell response?"
  to "What were the T-cell responses?") is supported by any on-topic passage yet asserts nothing;
- ``embedder``: the best cosine between the sentence and a passage sentence under the
  collection's embedder (paraphrase-tolerant, but blind to a changed number).

Sentences below the threshold are dropped; when none is left the answerer falls back to the
extractive reader's cited span, or "I don't know". So it does too when most of the answer was
unsupported (``min_groundedness``): a generator that made up most of an answer is not trusted on
the sentence or two that happen to match a passage (on COVID-QA SmolLM2's answers were 10-15%
grounded, and the sentence kept was as often wrong as right), and when all that is left is a
list's bare "1.". ``benchmarks/answers.py`` measures how well each
scorer separates supported from unsupported sentences, and the unsupported-answer rate with and
without the guard.

Example:
    >>> from ragtune.answer.grounding import OverlapScorer, ground
    >>> passages = ["Ingestion is crash-safe: a killed run, re-run, loses nothing and duplicates nothing."]
    >>> g = ground("A killed run loses nothing when re-run [1]. It uses a random number generator [1].",
    ...            passages, OverlapScorer(), 0.6)
    >>> [round(s.support, 2) for s in g.sentences], g.text, g.groundedness
    ([0.83, 0.0], 'A killed run loses nothing when re-run [1].', 0.5)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Protocol

from ragtune.answer.citations import cited_numbers, strip_citations
from ragtune.answer.extractive import sentences
from ragtune.index.sparse import Bm25Encoder

_NUMBER = re.compile(r"^\d+$")
_ENUMERATOR = re.compile(r"\s*\(?\d{1,2}[.)]\s*")  # "1." of a list whose item was dropped


class SupportScorer(Protocol):
    name: str

    def score(self, sentence: str, passages: list[str], question: str = "") -> float:
        """How well the best of ``passages`` supports ``sentence`` as an answer to ``question``, 0–1."""
        ...


# A word that names something: capitalised past the sentence's first word, with a capital inside
# ("HAdV", "NIH", "mRNA"), or letters and digits together ("IL-6", "H1N1").
_NAME = re.compile(r"(?<=\s)[A-Z][\w-]*|\b\w*[a-z]\w*[A-Z][\w-]*|\b[A-Z]{2,}[\w-]*|\b(?=\w*\d)(?=\w*[A-Za-z])[\w-]+")


@dataclass
class OverlapScorer:
    """
    >>> s = OverlapScorer()
    >>> p = ["Hepcidin release is stimulated by iron and by inflammation (IL-6)."]
    >>> s.score("Iron stimulates hepcidin release.", p), s.score("Hepcidin release is stimulated by Hempelenidine.", p)
    (1.0, 0.0)
    >>> s.score("What stimulates hepcidin release?", p, question="What stimulates the release of hepcidin?")
    0.0
    """

    name: str = "overlap"
    analyser: Bm25Encoder = field(default_factory=Bm25Encoder)

    def score(self, sentence: str, passages: list[str], question: str = "") -> float:
        text = strip_citations(sentence)
        terms = set(self.analyser.terms(text))
        if not terms:
            return 1.0  # nothing asserted ("Yes.")
        asked = set(self.analyser.terms(question))
        new = terms - asked
        if not new:
            return 0.0  # the question restated: on-topic, answers nothing
        names = {t for name in _NAME.findall(text) for t in self.analyser.terms(name)} - asked
        best = 0.0
        for passage in passages:
            have = set(self.analyser.terms(passage))
            if any((_NUMBER.match(t) or t in names) and t not in have for t in new):
                continue  # a figure or a name this passage does not state
            best = max(best, len(new & have) / len(new))
        return best


@dataclass
class EmbedderScorer:
    embedder: object  # ragtune.models.embedder.Embedder
    name: str = "embedder"

    def score(self, sentence: str, passages: list[str], question: str = "") -> float:
        # Cosine does not subtract the question; it is the paraphrase-tolerant second opinion.
        pieces = [p[s:e] for p in passages for s, e in sentences(p)]
        if not pieces:
            return 0.0
        q = self.embedder.embed_query(strip_citations(sentence))  # type: ignore[attr-defined]
        d = self.embedder.embed_documents(pieces)  # type: ignore[attr-defined]
        return float(max(0.0, (d @ q).max()))


def make_scorer(name: str, embedder=None) -> SupportScorer:
    if name == "overlap":
        return OverlapScorer()
    if name == "embedder":
        if embedder is None:
            raise ValueError("the embedder grounding scorer needs the collection's embedder")
        return EmbedderScorer(embedder)
    raise ValueError(f"unknown grounding scorer {name!r}: overlap | embedder")


@dataclass
class SentenceSupport:
    text: str
    support: float
    supported: bool


@dataclass
class Grounding:
    sentences: list[SentenceSupport]
    text: str  # the supported sentences only ("" when none is)

    @property
    def groundedness(self) -> float:
        """Share of the answer's sentences its passages support (1.0 for an empty answer)."""
        return sum(s.supported for s in self.sentences) / len(self.sentences) if self.sentences else 1.0

    @property
    def dropped(self) -> list[str]:
        return [s.text for s in self.sentences if not s.supported]


def ground(text: str, passages: list[str], scorer: SupportScorer, threshold: float,
           min_groundedness: float = 0.0, question: str = "") -> Grounding:
    """Score each sentence of ``text`` (the answer to ``question``, when given) against the passages
    it cites; keep those ≥ ``threshold``, none when fewer than ``min_groundedness`` of them are or the
    kept ones assert nothing.

    >>> passages = ["Unused leave days expire in March."]
    >>> ground("Days expire in March [1]. Managers approve flights. Trains are booked online.", passages,
    ...        OverlapScorer(), 0.6, min_groundedness=0.5).text
    ''
    >>> ground("1. Flights are free [1].", passages, OverlapScorer(), 0.6).text  # "1." asserts nothing
    ''
    >>> ground("1932 [1].", ["It opened in 1932."], OverlapScorer(), 0.6).text
    '1932 [1].'
    """
    answer_cites = cited_numbers(text, len(passages))
    out = []
    for s, e in sentences(text):
        sentence = text[s:e]
        cites = cited_numbers(sentence, len(passages)) or answer_cites or list(range(1, len(passages) + 1))
        support = scorer.score(sentence, [passages[n - 1] for n in cites], question)
        out.append(SentenceSupport(sentence, support, support >= threshold))
    # a list's bare "1." outlives its dropped item: it is no answer on its own
    kept = [s.text for s in out if s.supported and not (len(out) > 1 and _ENUMERATOR.fullmatch(strip_citations(s.text)))]
    grounding = Grounding(out, " ".join(kept))
    if grounding.groundedness < min_groundedness:
        grounding.text = ""
    return grounding
