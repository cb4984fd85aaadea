"""Why does the question writer train so slowly? One LoRA step of SmolLM2-135M through the
trainer (trl SFTTrainer, as `ragtune train qgen` runs it) against a bare forward + backward of the
same batch, and the same with the LM head applied to the completion tokens only (the loss needs
no logits for the prompt, and a 49k-word vocabulary makes them the largest tensor of the step).

Run from the repo root, on an otherwise idle machine:  .venv/bin/python benchmarks/qgen_speed.py
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import CACHE, DATA, RESULTS, table, write_report  # noqa: E402

from ragtune.data.squad import load_squad  # noqa: E402
from ragtune.synth.queries import DEFAULT_TYPES, qg_training_examples  # noqa: E402

BASE = "SmolLM2-135M-Instruct"


def batch_tensors(tokenizer, examples):
    import torch

    ids, labels = [], []
    for ex in examples:
        prompt = tokenizer.apply_chat_template(ex["prompt"], tokenize=True, add_generation_prompt=True)
        prompt = prompt["input_ids"] if hasattr(prompt, "keys") else list(prompt)  # a BatchEncoding in transformers 5
        completion = tokenizer(ex["completion"][0]["content"] + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
        ids.append(prompt + completion)
        labels.append([-100] * len(prompt) + completion)
    n = max(map(len, ids))
    pad = tokenizer.pad_token_id or 0
    input_ids = torch.tensor([x + [pad] * (n - len(x)) for x in ids])
    mask = torch.tensor([[1] * len(x) + [0] * (n - len(x)) for x in ids])
    lab = torch.tensor([y + [-100] * (n - len(y)) for y in labels])
    return input_ids, mask, lab, sum(map(len, ids))


def bare(model, input_ids, mask, labels, completion_only: bool, repeats: int) -> float:
    import torch

    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        if completion_only:
            hidden = model.base_model.model.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
            keep = labels[:, 1:] != -100
            logits = model.base_model.model.lm_head(hidden[:, :-1][keep])
            loss = torch.nn.functional.cross_entropy(logits, labels[:, 1:][keep])
        else:
            loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        model.zero_grad()
        seconds.append(time.perf_counter() - start)
    return min(seconds)


def main() -> None:
    from peft import get_peft_model
    from transformers import AutoTokenizer

    from ragtune.models.generator import base_model_path
    from ragtune.train.generator import GeneratorTrainConfig, train_generator
    from ragtune.train.methods import get_method

    home = CACHE / "qgen-speed"
    examples = qg_training_examples(load_squad(DATA / "squad" / "dev-v1.1.json"), 24, types=DEFAULT_TYPES)
    path = base_model_path(BASE, home)
    tokenizer = AutoTokenizer.from_pretrained(path)
    batch = examples[:8]
    input_ids, mask, labels, tokens = batch_tensors(tokenizer, batch)

    start = time.perf_counter()
    r = train_generator(BASE, examples, home / "out", GeneratorTrainConfig(max_steps=3, batch_size=8), home)
    trainer_step = r.seconds / r.steps
    print(f"trainer: {trainer_step:.1f} s/step ({time.perf_counter() - start:.0f} s with loading)")

    method = get_method("lora")
    model = get_peft_model(method.load_base(path, "cpu"), method.peft_config(method.make_options({}), path))
    model.train()
    full = bare(model, input_ids, mask, labels, False, 3)
    lean = bare(model, input_ids, mask, labels, True, 3)
    rows = [["trl SFTTrainer step (`ragtune train qgen`)", f"{trainer_step:.2f}", f"{tokens / trainer_step:.0f}"],
            ["bare forward + backward, all logits", f"{full:.2f}", f"{tokens / full:.0f}"],
            ["bare forward + backward, completion logits only", f"{lean:.2f}", f"{tokens / lean:.0f}"]]
    out = {"tokens_per_batch": tokens, "trainer_s_per_step": trainer_step, "bare_s": full, "bare_completion_only_s": lean}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "qgen_speed.json").write_text(json.dumps(out, indent=2))
    write_report("qgen_speed", "Question-writer training speed: the trainer vs a bare step", f"""
One batch of 8 SQuAD-derived writer examples (questions, claims, keywords in turn), {tokens} tokens.

{table(["what", "seconds per batch", "tokens/s"], rows)}
""")


if __name__ == "__main__":
    main()
