"""Fine-tuning methods of the local LLM, one sub-package each (the ``peft`` layout): ``lora``,
``qlora``, ``ia3``, ``prompt_tuning``, ``p_tuning``, ``prefix`` and ``full``.

Example:
    >>> from ragtune.train.methods import get_method, method_names
    >>> method_names()
    ['full', 'ia3', 'lora', 'p-tuning', 'prefix', 'prompt-tuning', 'qlora']
    >>> get_method("lora").make_options({"r": "8"}).r
    8
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from ragtune.errors import InputError
from ragtune.train.methods.base import TuningMethod


@cache
def _methods() -> dict[str, TuningMethod]:
    found = {}
    for info in pkgutil.iter_modules(__path__):
        if info.ispkg:
            method = importlib.import_module(f"{__name__}.{info.name}").METHOD
            found[method.name] = method
    return found


def method_names() -> list[str]:
    return sorted(_methods())


PREFERENCE_OBJECTIVES = ("dpo", "kto")  # trained by ragtune.train.preference, on top of a method


def get_method(name: str) -> TuningMethod:
    try:
        return _methods()[name]
    except KeyError:
        hint = (f" ({name} is a preference objective, not a method: `ragtune train preferences --objective {name}` "
                "trains it on top of any of these)") if name in PREFERENCE_OBJECTIVES else ""
        raise InputError(f"unknown fine-tuning method {name!r}; use one of {', '.join(method_names())}{hint}") from None


__all__ = ["PREFERENCE_OBJECTIVES", "TuningMethod", "get_method", "method_names"]
