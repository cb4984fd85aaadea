"""Fold a trained adapter into its base model for export: one plain Hugging Face model folder
that any runtime (vLLM, llama.cpp converters, transformers) loads without ``peft``.

Only weight-side methods merge (LoRA, QLoRA, IA3); prompt, p- and prefix tuning add virtual
tokens at run time, which no plain model folder can hold.

Example:
    >>> from ragtune.train.merge import merge_adapter
    >>> merge_adapter("answers-lora", "exports/smollm2-answers")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from ragtune.errors import AlreadyExistsError, InputError
from ragtune.models.adapters import AdapterRegistry, is_peft_folder


def merge_adapter(name: str, out_dir: str | Path, home: str | Path | None = None) -> Path:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ragtune.models.generator import base_model_path
    from ragtune.train.methods import get_method

    registry = AdapterRegistry(home)
    meta = registry.get(name)
    folder = registry.path(name)
    if not is_peft_folder(folder):
        raise InputError(f"adapter {name!r} is a whole model already ({meta.get('method')}); use its folder {folder}")
    method = get_method(meta.get("method", "lora"))
    if not method.mergeable:
        raise InputError(f"adapter {name!r} ({method.name}) adds virtual tokens at run time and cannot be merged into "
                         "the weights; serve it as an adapter instead")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise AlreadyExistsError(f"{out} is not empty; choose a new folder")
    base = base_model_path(meta["base"], home)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    merged = PeftModel.from_pretrained(model, str(folder)).merge_and_unload()
    merged.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(base).save_pretrained(str(out))
    return out
