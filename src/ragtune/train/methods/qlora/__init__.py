"""QLoRA: LoRA on every linear layer of a base loaded in 4-bit NF4 (bitsandbytes), so training
needs about a quarter of the base's memory. The adapter it saves is a plain LoRA adapter: it
loads on the full-precision base for answering and can be merged like LoRA.

Example:
    >>> from ragtune.train.methods import get_method
    >>> get_method("qlora").quantized, get_method("qlora").make_options().target_modules[-1]
    (True, 'down_proj')
"""

from ragtune.train.methods.base import TuningMethod
from ragtune.train.methods.qlora.config import QLoraOptions, qlora_config

METHOD = TuningMethod("qlora", "LoRA on all linear layers over a 4-bit NF4 base", QLoraOptions, qlora_config,
                      learning_rate=2e-4, quantized=True, mergeable=True)
