from __future__ import annotations

from dataclasses import dataclass, field

from ragtune.train.methods.lora.config import LoraOptions, lora_config

# QLoRA adapts every linear layer (attention and MLP): the paper found that is what matches
# 16-bit full fine-tuning quality once the base is 4-bit.
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class QLoraOptions(LoraOptions):
    target_modules: list[str] = field(default_factory=lambda: list(ALL_LINEAR))


qlora_config = lora_config  # the adapter is plain LoRA; only the base's loading differs
