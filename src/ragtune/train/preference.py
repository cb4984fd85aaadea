"""Preference tuning of the local LLM: DPO on pairs (``prompt``, ``chosen``, ``rejected``) and KTO
on rated answers (``prompt``, ``completion``, ``label``), with trl's ``DPOTrainer`` /
``KTOTrainer`` on top of any method of :mod:`ragtune.train.methods` (LoRA by default).

Rows are what ``ragtune feedback export`` writes (``preferences.jsonl``, ``kto.jsonl``) or any file
of those shapes. A row's ``prompt`` is the question; with a ``context`` (the passages the answer
was given) it is turned into the very messages the answerer sends (numbered passages, the
collection's system prompt), so the adapter learns on what it will be served.

Every prompt is fitted to ``max_length`` with its answers: served prompts carry every retrieved
passage (a median of ~980 SmolLM2 tokens in the COVID-QA flywheel), and trl truncates a pair from
the *end*, so the answers — the only part the loss compares — were cut off for half the pairs and
DPO learnt nothing. :func:`fit_prompt` keeps the passages the answers quote first, then the others in
their served order, under their served numbers, as many as fit; a row whose answer-bearing passage
alone does not fit is left out and counted.

Measured on held-out pairs before and after: *preference accuracy*, the share of pairs whose chosen
answer the model finds more likely than the rejected one (summed log-probability of the answer's
tokens given the prompt), and the mean margin between the two. For DPO that is the quantity the
loss moves (with the base as reference; the ``sft_weight`` term on the chosen answers moves it
directly); for KTO the same pairs say whether rating answers up and
down taught the model which answers users prefer. The per-pair margins come back too, for a gate
(:func:`ragtune.evaluate.preference.preference_gate`) to refuse an adapter that does not win.

Example:
    >>> from ragtune.train.preference import PreferenceTrainConfig, train_preferences
    >>> pairs = [{"prompt": "When are salaries paid?", "chosen": "On the last working day [1].",
    ...           "rejected": "Every Friday."}]
    >>> train_preferences("SmolLM2-135M-Instruct", pairs, "adapters/prefs",
    ...                   PreferenceTrainConfig(max_steps=10))  # doctest: +SKIP
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

from ragtune.config import AnswerConfig
from ragtune.errors import InputError
from ragtune.train import release_autocast, run_trainer
from ragtune.train.args import TrainingArgs
from ragtune.train.embedder import TrainResult
from ragtune.train.methods import PREFERENCE_OBJECTIVES as OBJECTIVES
from ragtune.train.methods import get_method


@dataclass
class PreferenceTrainConfig(TrainingArgs):
    objective: Literal["dpo", "kto"] = "dpo"
    method: str = "lora"  # any of ragtune.train.methods
    options: dict[str, Any] = field(default_factory=dict)
    beta: float = 0.1  # how far from the base the policy may move (DPO/KTO's KL weight)
    # DPO only: weight of a language-modelling loss on the chosen answers added to DPO's (RPO, Pang
    # et al. 2024; Llama 3's recipe). Plain DPO raises chosen *relative to* the base and typically
    # lowers both answers' likelihood; the gate asks whether the policy itself finds the chosen
    # answer likelier, which the added term pulls up directly. 0 gives plain DPO.
    sft_weight: float = 1.0
    batch_size: int = 4
    max_length: int = 1024
    warmup_ratio: float = 0.1

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise InputError(f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if self.sft_weight < 0:
            raise InputError(f"sft_weight must be ≥ 0 (0: plain DPO), got {self.sft_weight}")
        get_method(self.method).make_options(self.options)

    def to_dict(self) -> dict:
        out = super().to_dict()
        out["options"] = asdict(get_method(self.method).make_options(self.options))
        return out

    def default_learning_rate(self) -> float:
        # A quarter of the method's SFT rate: preference losses push on two answers at once and
        # overshoot at SFT rates (DPO's paper used 5e-7 for full models; LoRA tolerates more).
        return get_method(self.method).learning_rate / 4


Messages = list[dict[str, str]]


def as_messages(row: dict[str, Any], answer: AnswerConfig | None = None,
                keep: list[int] | None = None) -> Messages:
    """The prompt of a preference row as chat messages: given as messages, kept; a question with
    ``context`` passages, the answerer's own messages (``keep``: only those passages, by index, under
    their served numbers); a bare question, one user turn."""
    from ragtune.answer.prompt import Passage, build_messages

    prompt = row.get("prompt")
    if isinstance(prompt, list):
        return prompt
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError(f"preference row {row.get('answer_id') or row}: 'prompt' must be a question or chat messages")
    context = row.get("context") or []
    if context:
        chosen = range(len(context)) if keep is None else sorted(keep)
        passages = [Passage(i + 1, context[i]) for i in chosen]
        return build_messages(prompt, passages, answer or AnswerConfig())
    return [{"role": "user", "content": prompt}]


def _quotes(passage: str, answer: str) -> bool:
    """Whether ``passage`` holds ``answer`` (or, for a long answer, its first words) verbatim,
    whitespace and case aside."""
    flat = " ".join(passage.split()).lower()
    words = answer.split()
    return bool(words) and " ".join(words[:12]).lower() in flat


def fit_prompt(row: dict[str, Any], answers: list[str], count: Callable[[Messages], int], max_length: int,
               answer: AnswerConfig | None = None) -> Messages | None:
    """``row``'s prompt with as many of its ``context`` passages as leave room, within ``max_length``
    tokens, for the longest of ``answers``: the passages that quote an answer first, then the rest in
    served order. None when not even the first of them fits.

    Example:
        >>> count = lambda messages: sum(len(m["content"].split()) for m in messages)
        >>> row = {"prompt": "Who?", "context": ["filler " * 50, "Ada wrote it.", "more " * 50]}
        >>> [m["content"] for m in fit_prompt(row, ["Ada"], count, 40, AnswerConfig(system_prompt="S"))][1]
        'Context:\\n[2] Ada wrote it.\\n\\nQuestion: Who?'
    """
    context = row.get("context") or []
    room = max_length - max((count([{"role": "assistant", "content": a}]) for a in answers), default=0)
    full = as_messages(row, answer)
    if not context or isinstance(row.get("prompt"), list) or count(full) <= room:
        return full
    quoted = [i for i, text in enumerate(context) if any(_quotes(text, a) for a in answers)]
    order = quoted + [i for i in range(len(context)) if i not in quoted]
    keep: list[int] = []
    for i in order:
        if count(as_messages(row, answer, keep + [i])) <= room:
            keep.append(i)
        elif not keep:
            return None
    return as_messages(row, answer, keep)


def split_by_time(rows: list[dict[str, Any]], fraction: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(older, newer): the newest ``fraction`` of ``rows`` (by ``created`` when given, else file
    order) held out — train on the past, judge on what came after; nothing held out below 5 rows.

    Example:
        >>> older, newer = split_by_time([{"created": t} for t in (3, 1, 2, 5, 4)], 0.4)
        >>> [r["created"] for r in older], [r["created"] for r in newer]
        ([1, 2, 3], [4, 5])
    """
    if len(rows) < 5:
        return rows, []
    ordered = sorted(rows, key=lambda r: r.get("created", 0))  # stable: file order where no time is given
    cut = len(ordered) - max(1, round(len(ordered) * fraction))
    return ordered[:cut], ordered[cut:]


Fit = Callable[[dict[str, Any], list[str]], "Messages | None"]


def dpo_rows(rows: list[dict[str, Any]], answer: AnswerConfig | None = None,
             fit: Fit | None = None) -> list[dict[str, Any]]:
    """trl's conversational preference rows from exported pairs; a row lacking a field is named.
    With ``fit`` (:func:`fit_prompt` bound to a tokenizer) each prompt is fitted to its answers and
    a row that cannot fit is left out."""
    out = []
    for n, r in enumerate(rows, start=1):
        for key in ("chosen", "rejected"):
            if not isinstance(r.get(key), str) or not r[key].strip():
                raise InputError(f"preference row {n}: '{key}' must be a non-empty answer")
        prompt = fit(r, [r["chosen"], r["rejected"]]) if fit else as_messages(r, answer)
        if prompt is not None:
            out.append({"prompt": prompt, "chosen": [{"role": "assistant", "content": r["chosen"]}],
                        "rejected": [{"role": "assistant", "content": r["rejected"]}]})
    return out


def kto_rows(rows: list[dict[str, Any]], answer: AnswerConfig | None = None,
             fit: Fit | None = None) -> list[dict[str, Any]]:
    out = []
    for n, r in enumerate(rows, start=1):
        if not isinstance(r.get("completion"), str) or not isinstance(r.get("label"), bool):
            raise InputError(f"KTO row {n}: needs 'completion' (an answer) and 'label' (true/false)")
        prompt = fit(r, [r["completion"]]) if fit else as_messages(r, answer)
        if prompt is not None:
            out.append({"prompt": prompt, "completion": [{"role": "assistant", "content": r["completion"]}],
                        "label": r["label"]})
    if len({r["label"] for r in out}) < 2:
        raise InputError("KTO needs answers rated up and answers rated down; these rows hold only one kind")
    return out


def preference_accuracy(model, tokenizer, pairs: list[dict[str, Any]], device: str) -> dict[str, Any]:
    """Share of ``pairs`` (trl conversational rows) whose chosen answer has the higher summed
    log-probability given the prompt, the mean margin (chosen − rejected, nats), and each pair's
    margin in order (``margins``)."""
    import torch

    def logp(prompt: list[dict[str, str]], answer: list[dict[str, str]]) -> float:
        start = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
        whole = tokenizer.apply_chat_template(prompt + answer, tokenize=False)
        ids = tokenizer(whole, return_tensors="pt", add_special_tokens=False)["input_ids"].to(device)
        n_prompt = len(tokenizer(start, add_special_tokens=False)["input_ids"])
        with torch.no_grad():
            logits = model(input_ids=ids).logits.float()
        logprobs = torch.log_softmax(logits[0, :-1], dim=-1)
        targets = ids[0, 1:]
        token_lp = logprobs.gather(1, targets[:, None])[:, 0]
        return float(token_lp[n_prompt - 1:].sum())

    was_training = model.training
    model.eval()
    margins = [logp(p["prompt"], p["chosen"]) - logp(p["prompt"], p["rejected"]) for p in pairs]
    if was_training:
        model.train()
    return {"accuracy": sum(m > 0 for m in margins) / len(margins), "margin": sum(margins) / len(margins),
            "pairs": float(len(margins)), "margins": margins}


def pair_fitter(tokenizer, max_length: int, answer: AnswerConfig | None = None) -> Fit:
    """:func:`fit_prompt` with ``tokenizer``'s token count: how training and scoring cut a row's passages."""
    def count(messages: Messages) -> int:
        # Rendered as trl renders it. An answer counted alone also pays for the template's default
        # system turn: a few dozen tokens of slack, on the safe side.
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    def fit(row: dict[str, Any], answers: list[str]) -> Messages | None:
        return fit_prompt(row, answers, count, max_length, answer)

    return fit


def train_preferences(base_model: str, rows: list[dict[str, Any]], out_dir: str | Path,
                      config: PreferenceTrainConfig | None = None, home: str | Path | None = None,
                      device: str | None = None, eval_pairs: list[dict[str, Any]] | None = None,
                      answer: AnswerConfig | None = None) -> TrainResult:
    """Train ``config.objective`` on ``rows`` (exported pairs for DPO, rated answers for KTO) and
    save the adapter to ``out_dir``. With ``eval_pairs`` (exported pairs, held out) preference
    accuracy and margin are measured before and after (``metrics["before"|"after"]``)."""
    from datasets import Dataset
    from transformers import AutoTokenizer

    from ragtune.models.generator import base_model_path
    from ragtune.models.loading import best_device

    config = config or PreferenceTrainConfig()
    if not rows:
        raise InputError("no preference rows to train on")
    method = get_method(config.method)
    path = base_model_path(base_model, home)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token

    fit = pair_fitter(tokenizer, config.max_length, answer)
    train = dpo_rows(rows, answer, fit) if config.objective == "dpo" else kto_rows(rows, answer, fit)
    held = dpo_rows(eval_pairs, answer, fit) if eval_pairs else []
    if not train:
        raise InputError(f"no preference row fits max_length {config.max_length} tokens with its answers; raise it")
    device = best_device(device)
    model = method.load_base(path, device)
    metrics: dict[str, Any] = {"objective": config.objective, "max_length": config.max_length,
                               "rows_too_long": len(rows) - len(train),
                               "held_out_too_long": len(eval_pairs or []) - len(held)}
    if held:
        metrics["before"] = preference_accuracy(model, tokenizer, held, device)
    with tempfile.TemporaryDirectory(prefix="ragtune-pref-") as scratch:
        trainer = _trainer(config, method, model, tokenizer, Dataset.from_list(train), scratch, device, path)
        output, seconds = run_trainer(trainer, release=False)
        release_autocast(trainer.model)
        trained = trainer.model
    if held:
        metrics["after"] = preference_accuracy(trained, tokenizer, held, device)
    if hasattr(trained, "get_nb_trainable_parameters"):
        trainable, total = trained.get_nb_trainable_parameters()
    else:
        trainable = sum(p.numel() for p in trained.parameters() if p.requires_grad)
        total = sum(p.numel() for p in trained.parameters())
    trained.save_pretrained(str(out_dir))
    if config.method == "full":
        tokenizer.save_pretrained(str(out_dir))
    return TrainResult(Path(out_dir), output.global_step, float(output.training_loss), seconds, trainable, total,
                       metrics, trained)


def _trainer(config: PreferenceTrainConfig, method, model, tokenizer, dataset, scratch: str, device: str, path: str):
    """trl's trainer for the objective; the reference model is the base itself (peft disables the
    adapter to score it, so no second copy is held)."""
    shared = config.hf_arguments(scratch, device, max_length=config.max_length, beta=config.beta, logging_steps=10,
                                 bf16=config.uses_bf16(device) and not method.quantized)
    peft_config = method.peft_config(method.make_options(config.options), path)
    if config.objective == "dpo":
        from trl import DPOConfig, DPOTrainer

        if config.sft_weight:
            shared.update(loss_type=["sigmoid", "sft"], loss_weights=[1.0, config.sft_weight])
        return DPOTrainer(model=model, args=DPOConfig(**shared), train_dataset=dataset, processing_class=tokenizer,
                          peft_config=peft_config)
    from trl import KTOConfig, KTOTrainer

    return KTOTrainer(model=model, args=KTOConfig(**shared), train_dataset=dataset, processing_class=tokenizer,
                      peft_config=peft_config)
