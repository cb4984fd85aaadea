"""Losses of end-to-end RAG training, as plain functions of score tensors (so each can be checked
against a brute-force computation on its own).

- :func:`rag_sequence_loss`: the RAG-Sequence negative marginal log-likelihood
  ``-log Σ_k p(z_k|q) · p(y|q, z_k)`` with ``p(z|q) = softmax(s / τ)`` over the retrieved top-K.
  Its gradient reaches *both* models: the generator through ``log p(y|q,z)``, the query encoder
  through ``s`` (passages whose context makes the answer likely gain retrieval mass).
- :func:`contrastive_loss`: cross-entropy of the gold passage among candidates (the retriever's
  supervised signal; in the RAG-end2end recipe it is added to the marginal loss).
- :func:`gold_passage_loss`: the DALM-style objective, ``-log p(g|q) - log p(y|q, g)`` for the
  gold passage ``g`` only. Written as one "marginal" it is a product of two factors, so its log
  splits into two independent losses: the generator never sees a retrieved passage and the
  retriever never hears from the generator. It is here as the baseline the marginal is measured
  against.

Example:
    >>> import torch
    >>> from ragtune.train.rag.losses import rag_sequence_loss
    >>> scores = torch.tensor([[0.9, 0.1]])           # retrieval scores of 2 passages
    >>> logp = torch.tensor([[-1.0, -5.0]])           # log p(answer | question, passage)
    >>> round(float(rag_sequence_loss(scores, logp, temperature=1.0)), 4)
    1.3629
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def rag_sequence_loss(scores: torch.Tensor, answer_logprobs: torch.Tensor, temperature: float = 0.05,
                      mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over the batch of ``-log Σ_k softmax(scores/τ)_k · exp(answer_logprobs_k)``.

    ``scores``, ``answer_logprobs``: [B, K]; ``mask`` [B, K] (True = a real passage) lets a
    question with fewer than K retrieved passages share the batch. Computed in log space
    (logsumexp): the answer probabilities of a long answer underflow float32 as products."""
    log_prior = _masked_log_softmax(scores / temperature, mask)
    joint = log_prior + answer_logprobs
    if mask is not None:
        joint = joint.masked_fill(~mask, float("-inf"))
    return -torch.logsumexp(joint, dim=-1).mean()


def contrastive_loss(scores: torch.Tensor, target: torch.Tensor, temperature: float = 0.05,
                     mask: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of the candidate ``target[b]`` (the gold passage) among ``scores[b]``."""
    return F.nll_loss(_masked_log_softmax(scores / temperature, mask), target)


def gold_passage_loss(scores: torch.Tensor, gold_answer_logprobs: torch.Tensor,
                      temperature: float = 0.05) -> torch.Tensor:
    """DALM-style: in-batch ``scores`` [B, B] (question i × gold passage j) and the answer's
    log-likelihood given each question's own gold passage [B]: ``-log p(g_i|q_i) - log p(y_i|q_i,g_i)``."""
    target = torch.arange(scores.shape[0], device=scores.device)
    return contrastive_loss(scores, target, temperature) - gold_answer_logprobs.mean()


def _masked_log_softmax(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is not None:
        logits = logits.masked_fill(~mask, float("-inf"))
    return torch.log_softmax(logits, dim=-1)
