"""End-to-end RAG training: the query encoder and the generator tuned together with the true
RAG-Sequence marginal likelihood, plus the retriever-only, generator-only and DALM-style
baselines one flag away. ``ragtune train rag`` is the command; docs/finetuning.md explains it.

- :mod:`.losses`: the objectives as plain tensor functions;
- :mod:`.data`: (question, answer, gold chunk) triples from a SQuAD-format set;
- :mod:`.model`: the two models in one module (query embeddings, answer log-likelihoods);
- :mod:`.index`: the training index version, re-encoded periodically;
- :mod:`.trainer`: config, the Trainer's loss, save.
"""

from ragtune.train.rag.data import RagExample, rag_examples
from ragtune.train.rag.trainer import (
    VARIANTS,
    RagTrainConfig,
    RagTrainResult,
    step_loss,
    train_rag,
)

__all__ = ["RagExample", "rag_examples", "RagTrainConfig", "RagTrainResult", "VARIANTS", "step_loss", "train_rag"]
