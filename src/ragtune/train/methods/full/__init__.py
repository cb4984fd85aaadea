"""Full fine-tuning: every weight of the base trains and the result is a whole model folder
(the reference the parameter-efficient methods are measured against).

Example:
    >>> from ragtune.train.methods import get_method
    >>> get_method("full").peft_config(get_method("full").make_options(), "unused") is None
    True
"""

from ragtune.train.methods.base import TuningMethod
from ragtune.train.methods.full.config import FullOptions, full_config

METHOD = TuningMethod("full", "all weights (saves a whole model)", FullOptions, full_config, learning_rate=2e-5)
