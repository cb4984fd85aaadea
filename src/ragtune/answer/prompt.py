"""Grounded prompts: numbered context passages packed into a token budget.

Small-to-big: the chunk is what was found, its parent section is what the model reads; hits that
share a parent become one passage. Passages are added in rank order while they fit.

Example:
    >>> from ragtune.answer.prompt import pack_passages
    >>> from ragtune.types import Hit
    >>> hits = [Hit("a#0", "a", "x", 1.0, parent_text="Alpha section."), Hit("a#1", "a", "y", 0.9, parent_text="Alpha section."),
    ...         Hit("b#0", "b", "z", 0.8, parent_text="Beta section, much longer " * 20)]
    >>> [(p.number, p.text, [h.chunk_id for h in p.hits]) for p in pack_passages(hits, budget=10, count=lambda t: len(t.split()))]
    [(1, 'Alpha section.', ['a#0', 'a#1'])]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ragtune.config import AnswerConfig
from ragtune.types import Hit


@dataclass
class Passage:
    number: int
    text: str
    hits: list[Hit] = field(default_factory=list)

    @property
    def doc_id(self) -> str:
        return self.hits[0].doc_id


def pack_passages(hits: list[Hit], budget: int, count: Callable[[str], int], use_parents: bool = True) -> list[Passage]:
    passages: list[Passage] = []
    by_text: dict[str, Passage] = {}
    used = 0
    for hit in hits:
        text = (hit.parent_text if use_parents and hit.parent_text else hit.text).strip()
        if text in by_text:
            by_text[text].hits.append(hit)
            continue
        cost = count(f"[{len(passages) + 1}] {text}\n\n")
        if used + cost > budget:
            continue  # a later, shorter passage may still fit
        used += cost
        passage = Passage(len(passages) + 1, text, [hit])
        passages.append(passage)
        by_text[text] = passage
    return passages


def render_context(passages: list[Passage]) -> str:
    return "\n\n".join(f"[{p.number}] {p.text}" for p in passages)


def build_messages(question: str, passages: list[Passage], config: AnswerConfig) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": config.system_prompt}]
    for shot in config.few_shot:
        messages.append({"role": "user", "content": config.user_template.format(context=shot["context"], question=shot["question"])})
        messages.append({"role": "assistant", "content": shot["answer"]})
    messages.append({"role": "user", "content": config.user_template.format(context=render_context(passages) or "(none)",
                                                                            question=question)})
    return messages


def context_budget(config: AnswerConfig, context_window: int, count: Callable[[str], int], question: str) -> int:
    """Tokens left for passages: the configured budget, capped by what the model's window allows
    after the instructions, few-shot examples, question and the answer itself."""
    fixed = sum(count(m["content"]) + 8 for m in build_messages(question, [], config))
    room = context_window - fixed - config.max_new_tokens
    return max(0, min(room, config.max_context_tokens) if config.max_context_tokens else room)
