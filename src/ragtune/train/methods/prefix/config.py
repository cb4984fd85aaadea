from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PrefixOptions:
    num_virtual_tokens: int = 20
    # Li & Liang's reparameterisation through an MLP; off keeps the adapter small.
    projection: bool = False


def prefix_config(options: PrefixOptions, base_path: str):
    from peft import PrefixTuningConfig, TaskType

    return PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=options.num_virtual_tokens,
                              prefix_projection=options.projection)
