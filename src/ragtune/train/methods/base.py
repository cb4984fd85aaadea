"""What a fine-tuning method of the local LLM is: its own typed options, a default learning
rate, how the base model is loaded for it, and the ``peft`` config it trains (``None`` = all
weights).

Every method lives in a folder next to this file with the same shape (``__init__.py`` exposing
``METHOD``, ``config.py`` holding its options and ``peft`` config), so adding a method is adding
a folder; :func:`ragtune.train.methods.get_method` finds it by name.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable

from ragtune.errors import InputError


@dataclass(frozen=True)
class TuningMethod:
    name: str
    summary: str
    options: type  # a dataclass of this method's knobs, every one with a default
    peft_config: Callable[[Any, str], Any]  # (options, base model path) -> peft config or None
    learning_rate: float
    quantized: bool = False  # the base is loaded in 4-bit NF4 for training (QLoRA)
    mergeable: bool = False  # the trained weights can be folded into the base (ragtune adapters merge)

    def make_options(self, overrides: dict[str, Any] | None = None) -> Any:
        """The options dataclass with ``overrides`` applied; an unknown key names the valid ones."""
        overrides = dict(overrides or {})
        known = {f.name: f for f in fields(self.options)}
        unknown = sorted(set(overrides) - set(known))
        if unknown:
            raise InputError(f"method {self.name!r} has no option(s) {unknown}; its options are {sorted(known)}")
        defaults = self.options()
        for key, value in overrides.items():
            overrides[key] = _coerce(value, getattr(defaults, key), f"{self.name} option {key!r}")
        return self.options(**overrides)

    def load_base(self, path: str | Path, device: str):
        """The base model as this method trains it: float32, or 4-bit NF4 for quantized methods."""
        import torch
        from transformers import AutoModelForCausalLM

        if not self.quantized:
            return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        from transformers import BitsAndBytesConfig

        # NF4 with double quantisation, as in the QLoRA paper; compute stays in float32 because
        # CPUs have no fast bf16 matmul and the adapters train in float32 anyway.
        quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                   bnb_4bit_compute_dtype=torch.float32)
        model = AutoModelForCausalLM.from_pretrained(path, quantization_config=quant, dtype=torch.float32,
                                                     device_map={"": device})
        # bitsandbytes 0.50.2 repacks a 4-bit layer for its AVX512-bf16 kernel on the first
        # no-grad forward in eval mode (as Trainer.evaluate runs) and keeps that layout for the
        # training steps after it, which then compute different (measured: wrong) outputs: a
        # model trained after an evaluation did not match its own adapter reloaded. Training
        # stays on the one dequantising path.
        for module in model.modules():
            if hasattr(module, "support_avx512bf16_for_cpu"):
                module.support_avx512bf16_for_cpu = False
        return model


def _coerce(value: Any, default: Any, what: str) -> Any:
    """CLI options arrive as strings: convert them to the type of the option's default."""
    if not isinstance(value, str) or isinstance(default, str) or default is None:
        return value
    try:
        if isinstance(default, bool):
            if value.lower() not in ("true", "false", "1", "0"):
                raise InputError(value)
            return value.lower() in ("true", "1")
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, (list, tuple)):
            return [v.strip() for v in value.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{what}: {value!r} is not a valid {type(default).__name__}") from None
    return value
