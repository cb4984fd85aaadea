"""The two trainable halves of a RAG system in one ``nn.Module``: the query encoder (a
sentence-transformers model) and the generator (a causal LM, usually LoRA-wrapped).

- :meth:`RagModel.encode_queries` embeds questions *with* gradient;
- :meth:`RagModel.answer_logprobs` scores ``log p(answer | question, passage)`` for every
  (question, passage) pair, summing the log-probabilities of the answer tokens only. Each pair
  is the exact chat prompt ``ragtune ask`` builds (one numbered passage) followed by the target
  ``"<answer> [1]"``, so what is trained is what is served.

Example:
    >>> from ragtune.train.rag.model import RagModel
    >>> model = RagModel(encoder, generator, tokenizer)  # doctest: +SKIP
    >>> model.answer_logprobs(["who?"], [["Ada wrote it."]], ["Ada"])  # doctest: +SKIP
    (tensor([[-0.8]]), tensor([[True]]))
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ragtune.answer.prompt import Passage, build_messages
from ragtune.config import AnswerConfig


class RagModel(torch.nn.Module):
    def __init__(self, encoder, generator=None, tokenizer=None, answer_config: AnswerConfig | None = None,
                 max_passage_tokens: int = 256, micro_batch: int = 8):
        super().__init__()
        self.encoder = encoder
        self.generator = generator
        self.tokenizer = tokenizer
        self.answer_config = answer_config or AnswerConfig()
        self.max_passage_tokens = max_passage_tokens
        self.micro_batch = micro_batch

    def forward(self, **_):  # the trainer computes the loss (see trainer.RagTrainer.compute_loss)
        raise NotImplementedError("RagModel is driven by RagTrainer.compute_loss; call its methods directly")

    @property
    def device(self) -> torch.device:
        return next(self.encoder.parameters()).device

    # -- retriever ------------------------------------------------------------------------------
    def encode_queries(self, questions: list[str]) -> torch.Tensor:
        """[B, dim] L2-normalised query embeddings, differentiable w.r.t. the encoder."""
        features = self.encoder.preprocess(questions)
        features = {k: v.to(self.device) for k, v in features.items() if isinstance(v, torch.Tensor)}
        return F.normalize(self.encoder(features)["sentence_embedding"], dim=-1)

    # -- generator ------------------------------------------------------------------------------
    def pair_ids(self, question: str, passage: str, answer: str) -> tuple[list[int], list[int]]:
        """Token ids of the prompt (question + one passage) and of the target completion."""
        tok = self.tokenizer
        ids = tok(passage, add_special_tokens=False)["input_ids"]
        if len(ids) > self.max_passage_tokens:
            passage = tok.decode(ids[: self.max_passage_tokens])
        messages = build_messages(question, [Passage(1, passage)], self.answer_config)
        prompt = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        full = tok.apply_chat_template(messages + [{"role": "assistant", "content": f"{answer} [1]"}], tokenize=False)
        if not full.startswith(prompt):
            raise ValueError("the chat template renders the prompt differently with an answer appended; "
                             "cannot locate the answer tokens")
        return (tok(prompt, add_special_tokens=False)["input_ids"],
                tok(full[len(prompt):], add_special_tokens=False)["input_ids"])

    def answer_logprobs(self, questions: list[str], passages: list[list[str]], answers: list[str]
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """``log p(answer_b | question_b, passages[b][k])`` as [B, K] plus a [B, K] mask of real
        pairs (a question may have fewer than K passages; missing ones are -inf)."""
        width = max(len(p) for p in passages)
        pairs = [(b, k, self.pair_ids(q, text, a)) for b, (q, ps, a) in enumerate(zip(questions, passages, answers))
                 for k, text in enumerate(ps)]
        out = torch.full((len(questions), width), float("-inf"), device=self.device)
        mask = torch.zeros((len(questions), width), dtype=torch.bool, device=self.device)
        for start in range(0, len(pairs), self.micro_batch):
            part = pairs[start:start + self.micro_batch]
            scores = self._sequence_logprobs([ids for _, _, ids in part])
            for (b, k, _), score in zip(part, scores):
                out[b, k] = score
                mask[b, k] = True
        return out, mask

    def _sequence_logprobs(self, pairs: list[tuple[list[int], list[int]]]) -> torch.Tensor:
        """Sum of completion-token log-probs per (prompt, completion), one left-padded forward.

        Left padding puts every completion at the end of its row, so only the last
        ``max completion + 1`` logits are computed (``logits_to_keep``): the vocabulary
        projection over the whole prompt would dominate memory. Position ids are set from the
        mask so a padded row computes exactly what it would alone."""
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        length = max(len(p) + len(c) for p, c in pairs)
        tail = max(len(c) for _, c in pairs)
        ids = torch.full((len(pairs), length), pad, dtype=torch.long)
        attention = torch.zeros((len(pairs), length), dtype=torch.long)
        targets = torch.full((len(pairs), tail), -100, dtype=torch.long)
        for i, (p, c) in enumerate(pairs):
            seq = p + c
            ids[i, length - len(seq):] = torch.tensor(seq)
            attention[i, length - len(seq):] = 1
            targets[i, tail - len(c):] = torch.tensor(c)
        ids, attention, targets = ids.to(self.device), attention.to(self.device), targets.to(self.device)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        logits = self.generator(input_ids=ids, attention_mask=attention, position_ids=positions,
                                logits_to_keep=tail + 1).logits[:, :-1].float()
        logprobs = torch.log_softmax(logits, dim=-1)
        picked = logprobs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        return (picked * (targets != -100)).sum(-1)
