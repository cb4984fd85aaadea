"""Supervised fine-tuning of the local LLM with PEFT adapters, on trl's ``SFTTrainer``.

Examples are prompt/completion pairs of chat messages; the loss covers the completion only
(the prompt is what the model will be given, not what it must write). The adapter is saved as
a standard PEFT folder under ``$RAGTUNE_HOME/adapters/<name>/`` with ``meta.json``, and loads
with ``LocalGenerator(adapter=...)`` / ``generator.adapter=<name>``.

Example:
    >>> from ragtune.train.generator import GeneratorTrainConfig, train_generator
    >>> ex = [{"prompt": [{"role": "user", "content": "Passage: ... Write one question."}],
    ...        "completion": [{"role": "assistant", "content": "What is ...?"}]}]
    >>> train_generator("SmolLM2-135M-Instruct", ex, "adapters/qgen", GeneratorTrainConfig(max_steps=10))  # doctest: +SKIP
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from ragtune.train import run_trainer
from ragtune.train.embedder import TrainResult


@dataclass
class GeneratorTrainConfig:
    method: Literal["lora"] = "lora"
    epochs: float = 1.0
    max_steps: int = -1
    batch_size: int = 8
    gradient_accumulation: int = 1
    learning_rate: float = 2e-4
    warmup_ratio: float = 0.05
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    max_length: int = 512
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def peft_config(config: GeneratorTrainConfig):
    from peft import LoraConfig, TaskType

    if config.method == "lora":
        return LoraConfig(task_type=TaskType.CAUSAL_LM, r=config.lora_r, lora_alpha=config.lora_alpha,
                          lora_dropout=config.lora_dropout, target_modules=list(config.target_modules))
    raise ValueError(f"unknown method {config.method!r}")


def train_generator(base_model: str, examples: list[dict], out_dir: str | Path, config: GeneratorTrainConfig | None = None,
                    home: str | Path | None = None, device: str | None = None) -> TrainResult:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from ragtune.models.generator import PACKAGED_GGUF, packaged_model_dir
    from ragtune.models.loading import best_device

    config = config or GeneratorTrainConfig()
    if not examples:
        raise ValueError("no training examples")
    path = packaged_model_dir(base_model, home) if base_model in PACKAGED_GGUF else base_model
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    with tempfile.TemporaryDirectory(prefix="ragtune-sft-") as scratch:
        args = SFTConfig(
            output_dir=scratch, num_train_epochs=config.epochs, max_steps=config.max_steps,
            per_device_train_batch_size=config.batch_size, gradient_accumulation_steps=config.gradient_accumulation,
            learning_rate=config.learning_rate, warmup_steps=config.warmup_ratio, seed=config.seed,
            max_length=config.max_length, completion_only_loss=True, packing=False, save_strategy="no",
            report_to=[], logging_steps=10, use_cpu=best_device(device) == "cpu", bf16=False, fp16=False,
        )
        trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(examples),
                             processing_class=tokenizer, peft_config=peft_config(config))
        output, seconds = run_trainer(trainer)
        trained = trainer.model
    trainable = sum(p.numel() for p in trained.parameters() if p.requires_grad)
    total = sum(p.numel() for p in trained.parameters())
    trained.save_pretrained(str(out_dir))
    return TrainResult(Path(out_dir), output.global_step, float(output.training_loss), seconds, trainable, total)
