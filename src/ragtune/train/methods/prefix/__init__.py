"""Prefix tuning: trainable key/value vectors prepended at every attention layer (Li & Liang
2021), deeper than prompt tuning while the model stays frozen.

Example:
    >>> from ragtune.train.methods import get_method
    >>> get_method("prefix").make_options({"projection": "true"}).projection
    True
"""

from ragtune.train.methods.base import TuningMethod
from ragtune.train.methods.prefix.config import PrefixOptions, prefix_config

METHOD = TuningMethod("prefix", "trainable key/value prefixes in every attention layer", PrefixOptions,
                      prefix_config, learning_rate=1e-2)
