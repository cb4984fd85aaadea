"""Prompt tuning: a few trainable "virtual token" embeddings prepended to every input; the model
itself is untouched (Lester et al. 2021).

Example:
    >>> from ragtune.train.methods import get_method
    >>> get_method("prompt-tuning").make_options({"num_virtual_tokens": "8"}).num_virtual_tokens
    8
"""

from ragtune.train.methods.base import TuningMethod
from ragtune.train.methods.prompt_tuning.config import (
                      PromptTuningOptions,
                      prompt_tuning_config,
)

# Soft prompts need large steps: the peft and paper recipes use 3e-1 to 3e-2.
METHOD = TuningMethod("prompt-tuning", "trainable virtual-token embeddings before the input", PromptTuningOptions,
                      prompt_tuning_config, learning_rate=3e-2)
