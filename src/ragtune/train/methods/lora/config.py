from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ragtune.errors import InputError

# The attention projections of Llama-family models (SmolLM2 is one): LoRA's original placement.
ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]


@dataclass
class LoraOptions:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: list(ATTENTION))
    # Adapters on the top N transformer layers only (0 = every layer). Why: the backward pass
    # stops at the lowest layer holding an adapter, so a step costs less (benchmarks/qgen_speed.py
    # measures how much, and what the held-out loss gives up) for tasks that restyle the output.
    top_layers: int = 0

    def __post_init__(self) -> None:
        if self.top_layers < 0:
            raise InputError(f"LoRA option top_layers must be 0 (every layer) or a positive count, not {self.top_layers}")


def layer_count(base_path: str) -> int:
    """The base model's transformer layers, read from its config.json (Llama-family key)."""
    config = json.loads((Path(base_path) / "config.json").read_text())
    count = config.get("num_hidden_layers")
    if not isinstance(count, int):
        raise InputError(f"{base_path}/config.json has no num_hidden_layers: LoRA option top_layers needs it")
    return count


def lora_config(options: LoraOptions, base_path: str):
    from peft import LoraConfig, TaskType

    layers = None
    if options.top_layers:
        total = layer_count(base_path)
        layers = list(range(max(0, total - options.top_layers), total))
    return LoraConfig(task_type=TaskType.CAUSAL_LM, r=options.r, lora_alpha=options.alpha,
                      lora_dropout=options.dropout, target_modules=list(options.target_modules),
                      layers_to_transform=layers)
