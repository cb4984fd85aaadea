from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class IA3Options:
    # (IA)^3 rescales keys, values and the MLP's input to its down projection (the paper's choice).
    target_modules: list[str] = field(default_factory=lambda: ["k_proj", "v_proj", "down_proj"])
    feedforward_modules: list[str] = field(default_factory=lambda: ["down_proj"])


def ia3_config(options: IA3Options, base_path: str):
    from peft import IA3Config, TaskType

    return IA3Config(task_type=TaskType.CAUSAL_LM, target_modules=list(options.target_modules),
                     feedforward_modules=list(options.feedforward_modules))
