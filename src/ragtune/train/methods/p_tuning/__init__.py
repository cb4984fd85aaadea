"""P-tuning: virtual tokens produced by a small trainable prompt encoder (an MLP or LSTM),
which trains more stably than free embeddings (Liu et al. 2021).

Example:
    >>> from ragtune.train.methods import get_method
    >>> get_method("p-tuning").make_options().encoder_type
    'MLP'
"""

from ragtune.train.methods.base import TuningMethod
from ragtune.train.methods.p_tuning.config import PTuningOptions, p_tuning_config

METHOD = TuningMethod("p-tuning", "virtual tokens from a trainable prompt encoder", PTuningOptions,
                      p_tuning_config, learning_rate=1e-3)
