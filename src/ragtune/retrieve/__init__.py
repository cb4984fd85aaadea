"""Retrieval: dense / bm25 / hybrid search through the store, with the principal's ACL inside the query."""

from ragtune.retrieve.search import Searcher

__all__ = ["Searcher"]
