"""Supervised fine-tuning of the local LLM on trl's ``SFTTrainer``, with any method of
:mod:`ragtune.train.methods` (LoRA, QLoRA, IA3, prompt tuning, p-tuning, prefix tuning, full).

Examples are prompt/completion pairs of chat messages; the loss covers the completion only
(the prompt is what the model will be given, not what it must write). Parameter-efficient
methods save a standard PEFT folder, ``full`` a whole model folder; both load with
``LocalGenerator(adapter=...)`` / ``generator.adapter=<name>``.

Example:
    >>> from ragtune.train.generator import GeneratorTrainConfig, train_generator
    >>> ex = [{"prompt": [{"role": "user", "content": "Passage: ... Write one question."}],
    ...        "completion": [{"role": "assistant", "content": "What is ...?"}]}]
    >>> cfg = GeneratorTrainConfig(method="ia3", max_steps=10)
    >>> train_generator("SmolLM2-135M-Instruct", ex, "adapters/qgen", cfg)  # doctest: +SKIP
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from ragtune.errors import InputError
from ragtune.train import release_autocast, run_trainer
from ragtune.train.curve import LearningCurve, ResumableArgs, last_checkpoint
from ragtune.train.embedder import TrainResult
from ragtune.train.methods import get_method


@dataclass
class GeneratorTrainConfig(ResumableArgs):
    method: str = "lora"  # see ragtune.train.methods.method_names()
    options: dict[str, Any] = field(default_factory=dict)  # the method's own knobs, e.g. {"r": 8}
    batch_size: int = 8  # learning_rate None: the method's default (2e-4 LoRA … 3e-2 prompt tuning)
    gradient_accumulation: int = 1
    warmup_ratio: float = 0.05
    max_length: int = 1024
    # Off by default: a 135M model fits easily and recomputation costs ~30% more time; turn it
    # on for billion-parameter bases on a GPU. (Prefix tuning cannot use it: peft's prefix keys
    # and the checkpointed attention mask disagree in length.)
    gradient_checkpointing: bool = False
    # auto: bf16 autocast where native (a SmolLM2 LoRA step 1.35x faster here, same loss to 3
    # decimals), except for quantized bases, whose 4-bit layers keep their float32 compute path.
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    # Batches of similar length (HF's LengthGroupedSampler): random batches of writer examples
    # pad to 1.61x their tokens (measured on SQuAD passages), and padding is computed like text.
    group_by_length: bool = True

    def __post_init__(self) -> None:
        get_method(self.method).make_options(self.options)  # fail at construction, not after loading

    def to_dict(self) -> dict:
        out = super().to_dict()
        out["options"] = asdict(get_method(self.method).make_options(self.options))
        return out

    def default_learning_rate(self) -> float:
        return get_method(self.method).learning_rate


def train_generator(base_model: str, examples: list[dict], out_dir: str | Path, config: GeneratorTrainConfig | None = None,
                    home: str | Path | None = None, device: str | None = None,
                    eval_examples: list[dict] | None = None, checkpoint_dir: str | Path | None = None) -> TrainResult:
    """Train on ``examples`` and save to ``out_dir``; with ``eval_examples`` the completion loss
    on them is measured before and after training (``metrics["eval_loss_before"|"eval_loss_after"]``)
    and every ``config.eval_every`` steps (``metrics["curve"]``). ``checkpoint_dir``: checkpoints
    there every ``config.checkpoint_every`` steps, and a second call with it resumes the run."""
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from ragtune.models.generator import base_model_path
    from ragtune.models.loading import best_device

    config = config or GeneratorTrainConfig()
    if not examples:
        raise InputError("no training examples")
    method = get_method(config.method)
    path = base_model_path(base_model, home)
    device = best_device(device)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = method.load_base(path, device)
    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None
    curve = LearningCurve.beside(ckpt)  # held-out loss by step; continues when a run resumes

    class Curve(TrainerCallback):
        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            if metrics and "eval_loss" in metrics:
                curve.add(state.global_step, eval_loss=float(metrics["eval_loss"]))

    periodic = bool(eval_examples) and config.eval_every > 0
    with tempfile.TemporaryDirectory(prefix="ragtune-sft-") as scratch:
        args = SFTConfig(**config.hf_arguments(
            str(ckpt or scratch), device, gradient_accumulation_steps=config.gradient_accumulation, data_seed=None,
            max_length=config.max_length, completion_only_loss=True, packing=False, logging_steps=10,
            fp16=False, bf16=config.uses_bf16(device) and not method.quantized, gradient_checkpointing=config.gradient_checkpointing and config.method != "prefix",
            train_sampling_strategy="group_by_length" if config.group_by_length else "random",
            eval_strategy="steps" if periodic else "no", eval_steps=config.eval_every if periodic else None,
            # One held-out example per batch: the loss is then the mean of each example's, the same
            # whatever the batching (a batch's loss averages its tokens, so grouped batches weighed
            # long and short examples differently and moved the reported loss by 0.1).
            per_device_eval_batch_size=1,
            **config.checkpointing(ckpt),
        ))
        trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(examples),
                             eval_dataset=Dataset.from_list(eval_examples) if eval_examples else None,
                             processing_class=tokenizer,
                             peft_config=method.peft_config(method.make_options(config.options), path),
                             callbacks=[Curve()])
        if method.quantized and device == "cpu":
            _adapters_to_float32(trainer.model)
        metrics = {"processes": args.world_size}  # > 1 under torchrun / accelerate launch
        before = None
        if eval_examples:  # the loss before training (a resumed run has it in its curve already)
            before = curve.first("eval_loss") if curve.points else float(trainer.evaluate()["eval_loss"])
        resume = last_checkpoint(ckpt)
        output, seconds = run_trainer(trainer, resume_from_checkpoint=resume, release=False)
        if eval_examples:
            metrics.update(eval_loss_before=before, eval_loss_after=float(trainer.evaluate()["eval_loss"]),
                           curve=list(curve.points))
        if resume:
            metrics["resumed_from"] = resume
        release_autocast(trainer.model)
        trained = trainer.model
    if hasattr(trained, "get_nb_trainable_parameters"):  # peft counts packed 4-bit weights as the values they hold
        trainable, total = trained.get_nb_trainable_parameters()
    else:
        trainable = sum(p.numel() for p in trained.parameters() if p.requires_grad)
        total = sum(p.numel() for p in trained.parameters())
    trained.save_pretrained(str(out_dir))
    if config.method == "full":
        tokenizer.save_pretrained(str(out_dir))  # a whole model folder loads on its own
    return TrainResult(Path(out_dir), output.global_step, float(output.training_loss), seconds, trainable, total,
                       metrics, trained)


def _adapters_to_float32(model) -> None:
    """trl casts a quantized model's adapter weights to bf16 (the QLoRA paper's GPU setting). On
    CPU that is slower than float32, and the saved bf16 adapter is upcast when loaded for
    answering, so the served model would not be the one that was evaluated: keep float32. The
    optimizer is created at ``train()``, after this, so it sees the float32 weights."""
    import torch

    for param in model.parameters():
        if param.requires_grad and param.dtype == torch.bfloat16:
            param.data = param.data.to(torch.float32)
