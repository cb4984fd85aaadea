"""The kinds of query a synthetic query can be, each with its own instruction, parsing, validity
rule and training target.

Real users do not all type questions: SciFact's queries are claims, a search box gets keywords,
a help desk gets questions. Training data shaped like one kind teaches a retriever that kind
(Promptagator: a few examples of the task's queries steer generation; Tamber et al. 2025: a mix
of kinds is what makes synthetic training data help). Three kinds:

- ``question``: one specific question the passage answers (ends with "?");
- ``claim``: one declarative statement the passage supports or refutes (no question mark);
- ``keywords``: the 2–6 terms a searcher would type.

Each kind's training target for the question writer is built from SQuAD (what is offline): the
question itself, a claim from the question and its answer (``claim_from_question``), keywords from
the question's content words — never from a benchmark's own queries.

Example:
    >>> from ragtune.synth.query_types import QUERY_TYPES, infer_type
    >>> QUERY_TYPES["keywords"].parse("Keywords: tumour, hypoxia, growth limits.")
    'tumour hypoxia growth limits'
    >>> QUERY_TYPES["claim"].malformed("Does hypoxia limit growth?", "...")
    'not a claim'
    >>> [infer_type(q) for q in ["What limits growth?", "hypoxia tumour growth", "Hypoxia limits tumour growth."]]
    ['question', 'keywords', 'claim']
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from ragtune.data.squad import QAExample
from ragtune.data.text import normalize_answer

_MARKER = re.compile(r"^\s*(?:[-*•]|\(?\d+[.):]|(?:q(?:uestion)?|claim|keywords?|query)\s*\d*\s*[.:])\s*", re.IGNORECASE)
_QUESTION_WORDS = {"what", "which", "who", "whom", "whose", "when", "where", "why", "how", "does", "do", "did", "is",
                   "are", "was", "were", "can", "could", "would", "should", "will", "has", "have", "had"}
MAX_KEYWORDS = 6
# Words that carry no content: dropped from keyword queries, and from the overlap of a query with an example.
STOPWORDS = _STOP = {"the", "a", "an", "of", "in", "on", "at", "to", "for", "by", "with", "and", "or", "from", "as", "that", "this",
         "it", "its", "be", "been", "into", "than", "then", "there", "their", "they", "his", "her", "he", "she", "not",
         "name", "called", "type", "kind", "many", "much", "one", "year", "term"} | _QUESTION_WORDS


def _first_line(reply: str) -> str:
    for line in reply.splitlines():
        line = _MARKER.sub("", line).strip().strip('"“”').strip()
        if line:
            return line
    return ""


# A query about "the passage" or "the answer" is about the prompt, not the content: no user types it.
_GENERIC = re.compile(r"\b(?:the|this|that|given) (?:passage|text|article|paragraph|answer|question|document)s?\b",
                      re.IGNORECASE)


# A keyword query has lost "the" before "passage": words that only talk about the task or to the
# reader mark it instead ("passage contains several key phrases", "Here's suggested answer").
_TASK_WORDS = {"passage", "passages", "paragraph", "keyword", "keywords", "here's", "requested", "rephrased",
               "rephrasing", "you", "i", "i'll", "provided"}


def generic(query: str) -> bool:
    """Does ``query`` talk about the prompt rather than the content?

    >>> generic("What does the passage conclude?"), generic("What limits tumour growth?")
    (True, False)
    """
    return bool(_GENERIC.search(query))


def _sentence_rules(text: str, passage: str, min_words: int, max_words: int, min_copy_words: int,
                    end: str) -> str | None:
    """Length bounds, and no verbatim copy of the passage of ``min_copy_words`` or more (a copy
    teaches word matching, not meaning); ``end``: the final punctuation ignored when comparing."""
    n = len(text.split())
    if n < min_words:
        return "too short"
    if n > max_words:
        return "too long"
    core = normalize_answer(text.rstrip(end))
    if len(core.split()) >= min_copy_words and core in normalize_answer(passage):
        return "copied from the passage"
    return None


@dataclass(frozen=True)
class QueryType:
    name: str
    instruction: str  # what the writer is asked, after the passage
    parse: Callable[[str], str]  # the model's reply → the query
    malformed: Callable[..., str | None]  # (query, passage, min_words, max_words) → why unusable, or None
    from_squad: Callable[[QAExample], str | None]  # a training target derived from a SQuAD question


def question_malformed(question: str, passage: str, min_words: int = 4, max_words: int = 40) -> str | None:
    """Why ``question`` is unusable as a question, or None when it is fine."""
    q = question.strip()
    if not q:
        return "empty"
    if not q.endswith("?"):
        return "not a question"
    if generic(q):
        return "generic"
    return _sentence_rules(q, passage, min_words, max_words, min_words, "?")


_SOURCE = r"(?:the|this|given) (?:passage|text|article|paragraph|abstract|document)"
# A small writer wraps good content in talk about its prompt ("The passage suggests that X"):
# cut the wrapper and keep X, rather than lose the query (on SciFact 7 in 10 prompted claims and
# keyword lists were wrapped so).
_LEAD = re.compile(rf"^(?P<pre>to find |according to )?{_SOURCE}(?P<verb>\s+(?:suggests?|shows?|states?|indicates?|"
                   r"argues?|reports?|finds?|found|claims?|concludes?|says?|demonstrates?|discusses|describes|"
                   r"explains|highlights|mentions|is about|focuses on|provides information (?:about|on)|"
                   r"contains[^:]*?(?:including|such as|:)))?(?:\s+that)?(?P<sep>[\s,:]*)", re.IGNORECASE)
_ASKS_ABOUT = re.compile(rf"\b(?:does|do|did) {_SOURCE} (?:say|suggest|discuss|tell us|reveal|indicate|state|show|"
                         r"describe|report|explain|mention)\s+about\s+(?=\w)", re.IGNORECASE)
_ACCORDING = re.compile(rf",?\s*\b(?:according to|in|from) {_SOURCE}\s*,?", re.IGNORECASE)


def unframe(text: str) -> str:
    """``text`` without the writer's talk about its passage, when content remains.

    >>> unframe("The passage suggests that BMP signaling inhibits NODAL.")
    'BMP signaling inhibits NODAL.'
    >>> unframe("What does the passage suggest about the importance of PI3K in cancer?")
    'What is known about the importance of PI3K in cancer?'
    >>> unframe("According to the passage, how many lungs do we have?"), unframe("What is the answer?")
    ('How many lungs do we have?', 'What is the answer?')
    """
    out = _ASKS_ABOUT.sub("is known about ", text.strip())
    lead = _LEAD.match(out)
    # Only a wrapper: "This passage does not support ..." has the passage itself as its subject.
    if lead and (lead["pre"] or lead["verb"] or lead["sep"].strip()):
        out = out[lead.end():]
    out = _ACCORDING.sub(lambda m: " " if m.start() and m.end() < len(out) else "", out).strip()
    out = re.sub(r"\s+([?.!])$", r"\1", re.sub(r"\s{2,}", " ", out))
    if out == text.strip() or len(re.findall(r"\w+", out)) < 2:  # unwrapped, or nothing but the wrapper
        return text.strip()
    return out[0].upper() + out[1:]


def _question_parse(reply: str) -> str:
    return unframe(_first_line(reply))


def _claim_parse(reply: str) -> str:
    # One statement: a writer's second sentence is commentary ("However, it does not ...").
    line = re.split(r"(?<=[a-z0-9)][.!])\s+(?=[A-Z])", unframe(_first_line(reply)), maxsplit=1)[0]
    return line if not line or line[-1] in ".!?" else line + "."


def _claim_malformed(c: str, passage: str, min_words: int = 4, max_words: int = 40) -> str | None:
    if not c.strip():
        return "empty"
    if "?" in c:
        return "not a claim"
    if generic(c):
        return "generic"
    # A claim may quote a short phrase of its passage; only a long copy is refused.
    return _sentence_rules(c, passage, min_words, max_words, max(min_words, 12), "?.")


_BE = {"is", "are", "was", "were"}
_AUX = _BE | {"did", "does", "do", "has", "have", "had", "can", "could", "would", "should", "will", "may", "might"}
_IRREGULAR_PARTICIPLES = {"built", "born", "held", "made", "known", "written", "given", "taken", "found", "chosen",
                          "shown", "seen", "sold", "won", "lost", "led", "brought", "bought", "thought", "taught",
                          "begun", "done", "drawn", "grown", "thrown", "hidden", "spoken", "broken", "sent", "spent",
                          "kept", "paid", "told"}
_DETERMINERS = {"the", "a", "an", "his", "her", "its", "their", "this", "these", "those", "that", "one", "some", "each",
                "most", "many", "our", "my", "two", "three"}
_PREPOSITIONS = {"with", "for", "by", "of", "to", "in", "on", "as", "from", "about", "at", "into", "after", "like"}
_PLACE_OR_TIME = {"in", "on", "at", "during", "after", "before", "since", "by", "from", "until", "around", "near",
                  "between", "under", "within", "over", "through", "along", "across", "outside", "inside"}
_PRONOUNS = {"it", "there", "he", "she", "they", "we", "you", "i"}


def _participle(word: str) -> bool:
    return word.lower().endswith("ed") or word.lower() in _IRREGULAR_PARTICIPLES


def _opens_noun_phrase(word: str) -> bool:
    """Does the rest of a wh-question open with its subject ("the capital of X") rather than a
    predicate ("famous for X")?"""
    return word.lower() in _DETERMINERS or word[0].isupper() or word[0].isdigit() or "'" in word


def claim_from_question(question: str, answer: str) -> str | None:
    """The statement a SQuAD question and its answer make together, in the question's words, or
    None where the question's shape has no safe rewrite.

    The question's words are the annotator's, not the passage's: a claim built from them is a
    paraphrase the passage supports, where a clause cut from the answer's sentence taught the
    writer to copy (at stop 44, 14 of 23 trained claims were refused as copies).

    >>> claim_from_question("Who founded the Brazilian Academy of Letters?", "Machado de Assis")
    'Machado de Assis founded the Brazilian Academy of Letters.'
    >>> claim_from_question("What is the capital of Kenya?", "Nairobi")
    'The capital of Kenya is Nairobi.'
    >>> claim_from_question("When was REM sleep discovered?", "1953")
    'REM sleep was discovered in 1953.'
    >>> claim_from_question("What is Dioscorides known for?", "a herbal") is None  # the verb's place is unknown
    True
    """
    q = re.sub(r"\s+", " ", question.strip().rstrip("?").strip())
    a = answer.strip().rstrip(".").strip()
    if not q or not a or "?" in q or len(a.split()) > 8:
        return None
    w = q.split()
    first, rest = w[0].lower(), w[1:]
    if len(rest) < 2 or w[-1].lower() in _PREPOSITIONS or rest[1].lower() in _PRONOUNS or any(
            x.lower() in _PREPOSITIONS and y.lower() in _PREPOSITIONS for x, y in zip(w, w[1:])):
        return None
    out = None
    if first in ("what", "which", "who") and rest[0].lower() in _BE:
        be, subj = rest[0].lower(), rest[1:]
        if not _opens_noun_phrase(subj[0]):  # "Who was famous for X" -> "A was famous for X"
            out = f"{a} {be} " + " ".join(subj)
        elif _participle(subj[-1]) and len(subj) > 1:  # "What is X called" -> "X is called A"
            out = " ".join(subj[:-1]) + f" {be} {subj[-1]} {a}"
        else:  # "What is the capital of X" -> "The capital of X is A"
            out = " ".join(subj) + f" {be} {a}"
    elif (first == "who" and rest[0].lower() not in _AUX) or (
            first == "what" and rest[0].lower().endswith("ed") and rest[0].lower() != "happened"):
        out = f"{a} " + " ".join(rest)  # "Who founded X" -> "A founded X"
    elif first in ("when", "where") and rest[0].lower() in _BE and len(rest) >= 3 and _participle(w[-1]):
        head = a.split()[0]
        if head.lower() in _PLACE_OR_TIME:
            place = a
        elif _opens_noun_phrase(head):
            place = f"in {a}"
        else:
            return None
        out = " ".join(rest[1:-1]) + f" {rest[0].lower()} {w[-1]} {place}"  # "When was X founded" -> "X was founded in A"
    if not out or not 4 <= len(out.split()) <= 30 or generic(out):
        return None
    return out[0].upper() + out[1:] + "."


def _question_from_squad(ex: QAExample) -> str | None:
    # A target the filter would refuse ("the article", a copied sentence) teaches what is refused.
    q = ex.question.strip()
    return q if question_malformed(q, ex.context) is None else None


def _claim_from_squad(ex: QAExample) -> str | None:
    claim = claim_from_question(ex.question, ex.answers[0]) if ex.answers else None
    # Some SQuAD questions copy their passage, and so would the claim: refused as the filter would.
    return claim if claim and _claim_malformed(claim, ex.context) is None else None


def _keywords_parse(reply: str) -> str:
    """The reply's terms as a searcher types them: function words dropped, each term once, the first
    six kept (the form of the training targets, ``_keywords_from_squad``); a writer that runs on
    past six is copying its passage, and its first terms are the ones it chose."""
    line = unframe(_first_line(reply))
    terms = [t for t in re.split(r"[\s,;/|]+", re.sub(r"[^\w\s,;/|'-]", " ", line)) if t.strip("-'")]
    content = [t for t in terms if t.lower() not in _STOP] if len(terms) > MAX_KEYWORDS else terms
    return " ".join(list(dict.fromkeys(content))[:MAX_KEYWORDS])


def _keywords_malformed(k: str, passage: str, min_words: int = 2, max_words: int = 6) -> str | None:
    min_terms, max_terms = 2, MAX_KEYWORDS  # a keyword query's own bounds, whatever the sentence kinds allow
    n = len(k.split())
    if n == 0:
        return "empty"
    if generic(k) or any(t.lower() in _TASK_WORDS for t in k.split()):
        return "generic"
    if n < min_terms:
        return "too short"
    if n > max_terms:
        return "too many terms"
    return None


def _keywords_from_squad(ex: QAExample) -> str | None:
    # A task word ("you", "passage") in a target would teach what the filter refuses as generic.
    terms = [w for w in re.findall(r"[\w'-]+", ex.question) if w.lower() not in _STOP | _TASK_WORDS | _PRONOUNS]
    terms = list(dict.fromkeys(terms))[:MAX_KEYWORDS]
    return " ".join(terms) if len(terms) >= 2 else None


QUERY_TYPES: dict[str, QueryType] = {
    "question": QueryType(
        "question", "Write one specific question that this passage answers. Reply with the question only.",
        _question_parse, question_malformed, _question_from_squad),
    "claim": QueryType(
        "claim", "Write one factual claim that this passage supports or refutes: a single statement, not a "
        "question. Reply with the claim only.", _claim_parse, _claim_malformed, _claim_from_squad),
    "keywords": QueryType(
        "keywords", "Write the 2 to 6 keywords a person would type into a search engine to find this passage. "
        "Reply with the keywords only.", _keywords_parse, _keywords_malformed, _keywords_from_squad),
}


def infer_type(query: str) -> str:
    """The kind of a real query: a question mark makes a question; up to 6 words without a final
    full stop, keywords; anything else, a claim."""
    q = query.strip()
    if q.endswith("?") or (q.split() and q.split()[0].lower() in _QUESTION_WORDS - {"is", "are", "was", "were",
                                                                                        "has", "have", "had"}):
        return "question"
    if len(q.split()) <= 6 and not q.endswith("."):
        return "keywords"
    return "claim"


def parse_types(text: str) -> tuple[str, ...]:
    """``question,claim`` → ('question', 'claim'); unknown names fail with the valid ones."""
    names = tuple(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    unknown = [t for t in names if t not in QUERY_TYPES]
    if unknown or not names:
        raise ValueError(f"unknown query type(s) {unknown or text!r}: choose from {', '.join(QUERY_TYPES)}")
    return names
