"""(IA)^3: learned per-channel scaling vectors on keys, values and the feed-forward input; the
smallest of the weight-side methods (tens of thousands of parameters here).

Example:
    >>> from ragtune.train.methods import get_method
    >>> get_method("ia3").make_options().feedforward_modules
    ['down_proj']
"""

from ragtune.train.methods.base import TuningMethod
from ragtune.train.methods.ia3.config import IA3Options, ia3_config

# (IA)^3 vectors start at 1 and need a much larger step than LoRA to move (the paper used 3e-3).
METHOD = TuningMethod("ia3", "learned rescaling of keys, values and feed-forward activations", IA3Options,
                      ia3_config, learning_rate=3e-3, mergeable=True)
