"""Extractive answering: the answer is a span copied from the retrieved context.

This is the answer mode of extractive-QA evaluations (SQuAD, COVID-QA): exact match and F1 reward
the short span a reader points at, which a generative model rarely reproduces verbatim. Two
readers share one interface:

- :class:`SentenceReader`, the baseline: the context sentence closest to the question under the
  collection's own embedder. Needs no training, so every collection has it from the start.
- :class:`SpanReader`: any Hugging Face ``AutoModelForQuestionAnswering`` (start/end logits),
  e.g. the reader ``ragtune train reader`` produces, or a hub model such as
  ``deepset/roberta-base-squad2`` for users with internet access.

transformers 5 dropped its question-answering pipeline, so the span decoding (overlapping
windows over long passages, best start/end pair within a length limit, the [CLS] "no answer"
score) is written here.

Spans of different windows (passages, or parts of a long one) are compared by how far each beats
its own window's "no answer" score, not by raw logits: a window's logits carry an offset of their
own, so the raw maximum favours whichever passage happens to score high everywhere (on COVID-QA
questions of the training articles, retrieve-then-read with 5 passages, F1 24.4 → 26.7; unchanged
on single SQuAD paragraphs). ``length_prior`` adds ``length_prior × ln(span tokens)`` for domains whose
answers are clauses rather than names (off by default: on SQuAD it costs F1).

How long a span may be is the model's own: ``ragtune train reader`` records the 99th percentile of
the answer lengths it trained on (``ragtune-reader.json`` beside the weights; at least 30 tokens),
because domains differ by an order of magnitude (SQuAD answers: 3 tokens at the median, COVID-QA:
15, a quarter over 30) and a fixed cap cuts the long ones off.

Example:
    >>> from ragtune.answer.extractive import SentenceReader
    >>> from ragtune.config import EmbedderConfig
    >>> from ragtune.models.embedder import Embedder
    >>> reader = SentenceReader(Embedder(EmbedderConfig()))
    >>> span = reader.read("When did the tower open?", ["Paris is large.", "It is iron. The tower opened in 1889 for the fair."])
    >>> span.text, span.passage
    ('The tower opened in 1889 for the fair.', 2)
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ragtune.config import ReaderConfig
from ragtune.errors import InputError

READER_META = "ragtune-reader.json"  # beside a trained reader's weights: what it was trained on
MIN_ANSWER_TOKENS = 30  # SQuAD's long tail; a trained reader's recorded lengths only raise it


def recorded_answer_tokens(model: str | Path) -> int:
    """The span cap a trained reader records (its training answers' 99th-percentile length, at
    least :data:`MIN_ANSWER_TOKENS`); that floor for any other model (a hub id, an old folder)."""
    meta = Path(model) / READER_META
    try:
        recorded = int(json.loads(meta.read_text())["answer_tokens_p99"])
    except (OSError, ValueError, KeyError, TypeError):
        return MIN_ANSWER_TOKENS
    return max(MIN_ANSWER_TOKENS, recorded)

# A sentence ends at . ! ? (and closing quotes/brackets), at a blank line, or before a line that
# starts a list item, heading, quote or table row. A single line break inside a paragraph does not
# end one: Markdown and plain text are hard-wrapped, and a wrapped sentence is still one sentence.
_FENCE = re.compile(r"^[ \t]*```[^\n]*\n(.*?)^[ \t]*```[ \t]*$", re.DOTALL | re.MULTILINE)
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+|\n[ \t]*\n\s*|\n(?=[ \t]*(?:[-*+#>|]|\d+[.)])[ \t])")


@dataclass
class Span:
    text: str
    passage: int  # 1-based number of the passage it was taken from
    start: int  # character offsets in that passage
    end: int
    score: float  # reader-specific; higher is more confident
    no_answer_score: float | None = None  # SpanReader: the [CLS] score of the span's window
    sentence: str = ""  # the passage's sentence(s) around the span: what a reader of the answer checks it by


class Reader(Protocol):
    name: str
    context_window: int

    def read(self, question: str, passages: list[str]) -> Span | None:
        """The best span over all passages, or None when there is none (or the reader abstains)."""
        ...

    def count_tokens(self, text: str) -> int: ...


def sentences(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences (and lines) of ``text``, whitespace-trimmed. Inside a
    fenced code block each line is one unit (a command is an answer; the fence is not).

    >>> t = "First one. Second one?\\nThird, wrapped\\nover two lines\\n- a list item\\n\\nNew paragraph"
    >>> [t[s:e] for s, e in sentences(t)]
    ['First one.', 'Second one?', 'Third, wrapped\\nover two lines', '- a list item', 'New paragraph']
    >>> t = "Create one:\\n```bash\\nragtune keys create --user ana\\n```\\nDone."
    >>> [t[s:e] for s, e in sentences(t)]
    ['Create one:', 'ragtune keys create --user ana', 'Done.']
    """
    spans: list[tuple[int, int]] = []
    pos = 0
    for fence in _FENCE.finditer(text):
        spans += _prose(text, pos, fence.start())
        body = fence.start(1)
        for line in fence.group(1).splitlines(keepends=True):
            if line.strip():
                lead = len(line) - len(line.lstrip())
                spans.append((body + lead, body + len(line.rstrip())))
            body += len(line)
        pos = fence.end()
    return spans + _prose(text, pos, len(text))


def _prose(text: str, lo: int, hi: int) -> list[tuple[int, int]]:
    spans, start = [], lo
    for m in list(_SENTENCE_END.finditer(text, lo, hi)) + [None]:
        end = m.start() if m else hi
        piece = text[start:end]
        if piece.strip():
            lead = len(piece) - len(piece.lstrip())
            spans.append((start + lead, start + len(piece.rstrip())))
        if m:
            start = m.end()
    return spans


def sentence_around(text: str, start: int, end: int) -> str:
    """The sentences of ``text`` that the span ``[start, end)`` touches.

    >>> t = "Ingestion is crash-safe. A killed run resumes where it stopped, nothing duplicated. Fine."
    >>> sentence_around(t, t.index("resumes"), t.index("resumes") + 7)
    'A killed run resumes where it stopped, nothing duplicated.'
    """
    touched = [(s, e) for s, e in sentences(text) if s < end and e > start]
    if not touched:
        return text[start:end]
    return text[touched[0][0]:touched[-1][1]]


class SentenceReader:
    """Baseline reader: the sentence with the highest cosine similarity to the question."""

    name = "sentence-baseline"
    context_window = 1_000_000  # reads any amount of context; the answer config's budget applies

    def __init__(self, embedder, min_words: int = 3):
        self.embedder = embedder
        self.min_words = min_words  # fragments ("Fig. 2.") are not answers

    def count_tokens(self, text: str) -> int:
        return len(self.embedder.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def read(self, question: str, passages: list[str]) -> Span | None:
        candidates = [(n, s, e) for n, p in enumerate(passages, start=1) for s, e in sentences(p)
                      if len(p[s:e].split()) >= self.min_words]
        if not candidates:
            return None
        texts = [passages[n - 1][s:e] for n, s, e in candidates]
        q = self.embedder.embed_query(question)
        d = self.embedder.embed_documents(texts)
        scores = d @ q
        best = int(scores.argmax())
        n, s, e = candidates[best]
        return Span(texts[best], n, s, e, float(scores[best]), sentence=texts[best])


class SpanReader:
    """A span-prediction (extractive QA) model: best start/end token pair over every passage."""

    def __init__(self, model: str | Path, device: str | None = None, max_answer_tokens: int | None = None,
                 max_length: int = 384, stride: int = 128, batch_size: int = 16, precision: str = "auto",
                 length_prior: float = 0.0):
        import torch
        from transformers import AutoModelForQuestionAnswering, AutoTokenizer

        from ragtune.models.loading import best_device, native_bf16

        tokenizer = AutoTokenizer.from_pretrained(model)
        if not tokenizer.is_fast:
            raise InputError(f"reader {model}: needs a fast tokenizer (character offsets map answers back to text)")
        device = best_device(device)
        loaded = AutoModelForQuestionAnswering.from_pretrained(model, dtype=torch.float32).to(device).eval()
        if max_answer_tokens is None:
            max_answer_tokens = recorded_answer_tokens(model)
        self._setup(loaded, tokenizer, str(model), device, max_answer_tokens, max_length, stride, batch_size)
        self.length_prior = length_prior
        # bf16 autocast where the hardware computes it (1.7x on an AVX512-BF16 CPU); benchmarks/answers.py
        # measures that the answers stay the same.
        self.bf16 = precision == "bf16" or (precision == "auto" and native_bf16(device))

    @classmethod
    def wrap(cls, model, tokenizer, name: str, device: str, max_answer_tokens: int = 30, max_length: int = 384,
             stride: int = 128, batch_size: int = 16) -> SpanReader:
        """A reader over a model already in memory (a trainer measuring its learning curve)."""
        reader = cls.__new__(cls)
        reader._setup(model, tokenizer, name, device, max_answer_tokens, max_length, stride, batch_size)
        return reader

    def _setup(self, model, tokenizer, name: str, device: str, max_answer_tokens: int, max_length: int, stride: int,
               batch_size: int) -> None:
        self.name, self.model, self.tokenizer, self.device = name, model, tokenizer, device
        self.max_answer_tokens, self.max_length, self.stride, self.batch_size = max_answer_tokens, max_length, stride, batch_size
        self.context_window = 1_000_000  # long passages are read in overlapping windows
        self.bf16 = False
        self.length_prior = 0.0

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def read(self, question: str, passages: list[str]) -> Span | None:
        import torch

        if not passages:
            return None
        pad_right = self.tokenizer.padding_side == "right"
        enc = self.tokenizer(
            [question] * len(passages), passages, truncation="only_second" if pad_right else "only_first",
            max_length=self.max_length, stride=self.stride, return_overflowing_tokens=True,
            return_offsets_mapping=True, padding=True, return_tensors="pt")
        windows = enc.pop("overflow_to_sample_mapping").tolist()
        offsets = enc.pop("offset_mapping").tolist()
        seq_ids = [enc.sequence_ids(i) for i in range(len(windows))]
        starts, ends = [], []
        device_type = "cuda" if str(self.device).startswith("cuda") else "cpu"
        with torch.inference_mode(), torch.autocast(device_type, dtype=torch.bfloat16, enabled=self.bf16):
            for b in range(0, len(windows), self.batch_size):
                batch = {k: v[b:b + self.batch_size].to(self.device) for k, v in enc.items()}
                out = self.model(**batch)
                starts.append(out.start_logits.float().cpu())
                ends.append(out.end_logits.float().cpu())
        start_logits, end_logits = torch.cat(starts), torch.cat(ends)
        best: Span | None = None
        best_margin = float("-inf")
        for w, passage_index in enumerate(windows):
            context = [i for i, s in enumerate(seq_ids[w]) if s == 1]
            if not context:
                continue
            null_w = float(start_logits[w, 0] + end_logits[w, 0])
            span = self._best_in_window(start_logits[w], end_logits[w], context)
            if span is None:
                continue
            rank, score, i, j = span
            if rank - null_w > best_margin:  # how far it beats its own window's "no answer"
                best_margin = rank - null_w
                s, e = offsets[w][i][0], offsets[w][j][1]
                text = passages[passage_index]
                best = Span(text[s:e], passage_index + 1, s, e, score, null_w, sentence_around(text, s, e))
        return best

    def _best_in_window(self, start_logits, end_logits, context: list[int]):
        import torch

        lo, hi = context[0], context[-1] + 1
        s, e = start_logits[lo:hi], end_logits[lo:hi]
        # score[i, j] = s[i] + e[j], valid only for i <= j < i + max_answer_tokens
        scores = s[:, None] + e[None, :]
        n = scores.shape[0]
        valid = torch.ones(n, n, dtype=torch.bool).triu() & ~torch.ones(n, n, dtype=torch.bool).triu(self.max_answer_tokens)
        ranked = scores
        if self.length_prior:
            length = (torch.arange(n)[None, :] - torch.arange(n)[:, None] + 1).clamp(min=1)
            ranked = scores + self.length_prior * torch.log(length.float())
        ranked = ranked.masked_fill(~valid, float("-inf"))
        flat = int(ranked.argmax())
        i, j = divmod(flat, n)
        if not torch.isfinite(ranked[i, j]):
            return None
        # (what the choice was made by, the span's own score, its tokens)
        return float(ranked[i, j]), float(scores[i, j]), lo + i, lo + j


def make_reader(config: ReaderConfig, embedder, model: str | Path | None = None) -> Reader:
    """The reader ``config`` describes, or ``model`` read with its settings (a candidate being gated
    reads as it would once applied). No model (the default) gives the sentence baseline."""
    model = model if model is not None else config.model
    if model is None:
        return SentenceReader(embedder)
    return SpanReader(model, device=config.device, max_answer_tokens=config.max_answer_tokens,
                      length_prior=config.length_prior)
