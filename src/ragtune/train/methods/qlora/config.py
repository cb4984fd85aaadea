from __future__ import annotations

from dataclasses import dataclass, field

# QLoRA adapts every linear layer (attention and MLP): the paper found that is what matches
# 16-bit full fine-tuning quality once the base is 4-bit.
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class QLoraOptions:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: list(ALL_LINEAR))


def qlora_config(options: QLoraOptions, base_path: str):
    from peft import LoraConfig, TaskType

    return LoraConfig(task_type=TaskType.CAUSAL_LM, r=options.r, lora_alpha=options.alpha,
                      lora_dropout=options.dropout, target_modules=list(options.target_modules))
