from __future__ import annotations

from dataclasses import dataclass, field

# The attention projections of Llama-family models (SmolLM2 is one): LoRA's original placement.
ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]


@dataclass
class LoraOptions:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: list(ATTENTION))


def lora_config(options: LoraOptions, base_path: str):
    from peft import LoraConfig, TaskType

    return LoraConfig(task_type=TaskType.CAUSAL_LM, r=options.r, lora_alpha=options.alpha,
                      lora_dropout=options.dropout, target_modules=list(options.target_modules))
