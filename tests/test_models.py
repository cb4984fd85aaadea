"""Model loading without hidden global state: a truncation length per embedder, seeded sampling
that leaves everyone else's random stream alone."""

from __future__ import annotations

import torch

from ragtune.config import EmbedderConfig
from ragtune.models.embedder import Embedder
from ragtune.models.generator import GenerationConfig, _seeded


def test_max_seq_length_belongs_to_one_embedder(tiny_embedder):
    short = Embedder(EmbedderConfig(model=tiny_embedder, max_seq_length=16))
    default = Embedder(EmbedderConfig(model=tiny_embedder))
    assert short.max_seq_length == 16 and default.max_seq_length == 256  # the shared model was not changed
    text = " ".join(["word"] * 100)
    assert not torch.allclose(torch.from_numpy(short.embed_query(text)), torch.from_numpy(default.embed_query(text)))
    again = Embedder(EmbedderConfig(model=tiny_embedder, max_seq_length=16))
    assert again.model is short.model  # still one load per (model, device, length)


def test_seeded_sampling_does_not_reseed_the_global_generator():
    torch.manual_seed(1)
    expected = torch.rand(3)
    torch.manual_seed(1)
    with _seeded(GenerationConfig(temperature=0.7, seed=123)):
        inside = torch.rand(3)
    after = torch.rand(3)
    torch.manual_seed(123)
    assert torch.equal(inside, torch.rand(3))  # the call itself is seeded ...
    assert torch.equal(after, expected)  # ... and the caller's stream continues as if it never ran
