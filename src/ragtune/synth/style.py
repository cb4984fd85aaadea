"""How close generated queries are to the user's example queries: length and kind mix.

``--examples`` asks the writer for queries in the style of a few real ones; this says whether it
got there, so a user sees "examples 11.2 words, 100% claims; written 9.8 words, 96% claims" rather
than trusting the prompt.

Example:
    >>> from ragtune.synth.style import style_match
    >>> m = style_match(["vitamin D fractures", "statins dementia risk"],
    ...                 ["aspirin stroke", "hypoxia tumour growth", "Does BRCA1 repair DNA?"])
    >>> m["examples"]["kinds"], m["written"]["kinds"]
    ({'keywords': 0.667, 'question': 0.333}, {'keywords': 1.0})
    >>> m["kind_overlap"], m["length_ratio"]
    (0.667, 1.0)
    >>> copies_example("The absence of RNA surveillance causes sensitivity to iron.",
    ...                ("In yeast, the absence of RNA surveillance pathways causes sensitivity to high iron.",))
    True
"""

from __future__ import annotations

import statistics
from collections import Counter

from ragtune.data.text import normalize_answer
from ragtune.synth.query_types import STOPWORDS, infer_type

COPY_OVERLAP = 0.5  # content words in common / in either: above it a query restates an example


def describe(queries: list[str]) -> dict:
    """Word count (mean, sd) and the share of each kind (as :func:`infer_type` reads it)."""
    words = [len(q.split()) for q in queries]
    kinds = Counter(infer_type(q) for q in queries)
    return {"queries": len(queries),
            "words_mean": round(statistics.fmean(words), 2) if words else 0.0,
            "words_sd": round(statistics.pstdev(words), 2) if words else 0.0,
            "kinds": {k: round(n / len(queries), 3) for k, n in kinds.most_common()}}


def style_match(written: list[str], examples: list[str] | tuple[str, ...]) -> dict:
    """``written`` beside ``examples``: ``kind_overlap`` (the share of kinds in common, 1 = the
    same mix) and ``length_ratio`` (written mean words / examples', 1 = the same length)."""
    w, e = describe(list(written)), describe(list(examples))
    overlap = sum(min(share, w["kinds"].get(kind, 0.0)) for kind, share in e["kinds"].items())
    ratio = w["words_mean"] / e["words_mean"] if e["words_mean"] else 0.0
    return {"examples": e, "written": w, "kind_overlap": round(overlap, 3), "length_ratio": round(ratio, 2)}


def style_line(match: dict) -> str:
    """One line for a person: the examples' style and what was written."""
    def part(d: dict) -> str:
        kinds = ", ".join(f"{share:.0%} {kind}" for kind, share in d["kinds"].items())
        return f"{d['words_mean']:.1f} words ({kinds})"

    return (f"style: examples {part(match['examples'])}; written {part(match['written'])} — "
            f"kinds in common {match['kind_overlap']:.0%}, length ratio {match['length_ratio']:.2f}")


def _content(text: str) -> set[str]:
    return {w for w in normalize_answer(text).split() if w not in STOPWORDS}


def copies_example(query: str, examples: tuple[str, ...] | list[str]) -> bool:
    """Does ``query`` restate one of the user's example queries (their content words mostly shared)?
    A small writer shown examples can copy one for every passage; such a query is about the
    example's subject, not its passage's."""
    words = _content(query)
    return any(words and len(words & e) / len(words | e) > COPY_OVERLAP for e in map(_content, examples))
