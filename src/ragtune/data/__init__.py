"""The formats stages exchange, read *and* written in one place (pyserini's rule: standard files
between stages, so each stage runs alone on them):

- ``beir``: BEIR folders (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``);
- ``squad``: SQuAD v1.1/v2.0 QA files (``QAExample``), by-article splits, SQuAD → BEIR;
- ``trec``: TREC run and qrels files;
- ``text``: answer-text normalisation (the SQuAD rule) and the abstention answer ``ABSTAIN``;
- ``spans``: where a gold answer span sits among retrieved chunks.

Every stage imports these; nothing here imports a stage.
"""
