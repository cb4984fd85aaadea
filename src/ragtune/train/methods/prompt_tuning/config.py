from __future__ import annotations

from dataclasses import dataclass

INIT_TEXT = "Answer the question using only the numbered context passages and cite the passage, or say I don't know."


@dataclass
class PromptTuningOptions:
    num_virtual_tokens: int = 20
    # Starting from the embeddings of a task description converges faster than random vectors.
    init_text: str = INIT_TEXT


def prompt_tuning_config(options: PromptTuningOptions, base_path: str):
    from peft import PromptTuningConfig, PromptTuningInit, TaskType

    init = PromptTuningInit.TEXT if options.init_text else PromptTuningInit.RANDOM
    return PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=options.num_virtual_tokens,
                              prompt_tuning_init=init, prompt_tuning_init_text=options.init_text or None,
                              tokenizer_name_or_path=str(base_path) if options.init_text else None)
