"""Answering: grounded prompts, generation with citations, abstention."""

from ragtune.answer.answerer import Answer, Answerer

__all__ = ["Answer", "Answerer"]
