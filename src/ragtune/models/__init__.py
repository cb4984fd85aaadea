"""Model backends: embedder, reranker (later: generator, registry). One cached load per process."""
