from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PTuningOptions:
    num_virtual_tokens: int = 20
    encoder_hidden_size: int = 128
    encoder_type: str = "MLP"  # MLP | LSTM: the prompt encoder that produces the virtual tokens


def p_tuning_config(options: PTuningOptions, base_path: str):
    from peft import PromptEncoderConfig, TaskType

    return PromptEncoderConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=options.num_virtual_tokens,
                               encoder_hidden_size=options.encoder_hidden_size,
                               encoder_reparameterization_type=options.encoder_type)
