"""LoRA: low-rank updates ``B·A`` added to the attention projections; the base stays frozen.

Example:
    >>> from ragtune.train.methods import get_method
    >>> get_method("lora").make_options({"r": 8, "target_modules": "q_proj,v_proj"}).target_modules
    ['q_proj', 'v_proj']
"""

from ragtune.train.methods.base import TuningMethod
from ragtune.train.methods.lora.config import LoraOptions, lora_config

METHOD = TuningMethod("lora", "low-rank adapters on the attention projections", LoraOptions, lora_config,
                      learning_rate=2e-4, mergeable=True)
