"""Answer text: the official SQuAD normalisation, and the one abstention answer.

``normalize_answer`` follows the SQuAD v1.1 evaluation script exactly: lower-case, drop
punctuation, drop the articles a/an/the, collapse whitespace. Answering, synthesis, training and
scoring all compare answer text through it, so it lives below all of them.

Example:
    >>> from ragtune.data.text import ABSTAIN, is_abstention, normalize_answer
    >>> normalize_answer("The Eiffel Tower!")
    'eiffel tower'
    >>> is_abstention(ABSTAIN + "."), is_abstention("Paris [1]")
    (True, False)
"""

from __future__ import annotations

import re
import string

ABSTAIN = "I don't know"
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)


def normalize_answer(s: str) -> str:
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def is_abstention(prediction: str) -> bool:
    return normalize_answer(prediction).startswith(normalize_answer(ABSTAIN)) or not prediction.strip()
