"""Route modules: collections (documents, search, ask), openai (chat, embeddings, models), admin (keys, jobs, feedback)."""
