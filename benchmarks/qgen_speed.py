"""Why does the question writer train so slowly, and what makes it faster? The same SQuAD-derived
writer examples (questions, claims, keyword queries in turn) trained through `ragtune train qgen`'s
trainer (trl SFTTrainer, LoRA on SmolLM2-135M, batches of 8) under each setting side by side, one
lever added at a time, from the settings the question writer had when issue 18 was filed:

1. as filed: float32, random batches, LoRA on every layer;
2. + bf16 autocast (``precision=auto``: only where the CPU/GPU computes bf16 natively);
3. + batches of similar length (``group_by_length``: random batches pad to ~1.6x their tokens);
4. + LoRA on the top third of the layers (``--option top_layers=10``): the backward pass stops there.

Seconds per example count every step of a full pass over the same examples (first step included,
as a user waits for it). The held-out completion loss after training (other paragraphs) checks
that a faster setting still learns. A bare forward + backward of one batch is the floor the
trainer is compared with (its tokens/s).

Run from the repo root, on an otherwise idle machine:  .venv/bin/python benchmarks/qgen_speed.py
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import CACHE, DATA, RESULTS, table, write_report  # noqa: E402

from ragtune.data.squad import load_squad  # noqa: E402
from ragtune.synth.queries import DEFAULT_TYPES, qg_training_examples  # noqa: E402

BASE = "SmolLM2-135M-Instruct"
# (name, GeneratorTrainConfig fields, LoRA options): each row adds one lever to the row above.
SETTINGS = [
    ("as filed (fp32, random batches, LoRA on all 30 layers)", {"precision": "fp32", "group_by_length": False}, {}),
    ("+ bf16 autocast (precision auto)", {"precision": "auto", "group_by_length": False}, {}),
    ("+ batches of similar length", {"precision": "auto", "group_by_length": True}, {}),
    ("+ LoRA on the top 10 layers", {"precision": "auto", "group_by_length": True}, {"top_layers": 10}),
]


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


def bare(model, input_ids, mask, labels, bf16: bool, repeats: int) -> float:
    """Seconds of one forward + backward of the batch (the fastest of ``repeats``)."""
    import torch

    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        model.zero_grad()
        seconds.append(time.perf_counter() - start)
    return min(seconds)


def main() -> None:
    from peft import get_peft_model
    from transformers import AutoTokenizer

    from ragtune.models.generator import base_model_path
    from ragtune.models.loading import native_bf16
    from ragtune.train.generator import GeneratorTrainConfig, train_generator
    from ragtune.train.methods import get_method

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=96, help="training examples per setting (batches of 8)")
    ap.add_argument("--eval-examples", type=int, default=48, help="held-out paragraphs for the loss after training")
    args = ap.parse_args()

    home = CACHE / "qgen-speed"
    pool = qg_training_examples(load_squad(DATA / "squad" / "dev-v1.1.json"), args.examples + args.eval_examples,
                                types=DEFAULT_TYPES)
    train, held_out = pool[:args.examples], pool[args.examples:]
    path = base_model_path(BASE, home)
    tokenizer = AutoTokenizer.from_pretrained(path)
    input_ids, mask, labels, tokens = batch_tensors(tokenizer, train[:8])
    native = native_bf16("cpu")

    results = []
    for name, fields, options in SETTINGS:
        config = GeneratorTrainConfig(batch_size=8, options=options, **fields)
        r = train_generator(BASE, train, home / "out", config, home, device="cpu", eval_examples=held_out)
        per_example = r.seconds / len(train)
        results.append({"setting": name, "config": {**fields, **options}, "steps": r.steps, "seconds": r.seconds,
                        "seconds_per_example": per_example, "train_loss": r.train_loss,
                        "eval_loss_before": r.metrics["eval_loss_before"],
                        "eval_loss_after": r.metrics["eval_loss_after"]})
        print(f"{name}: {per_example:.2f} s/example, held-out loss {r.metrics['eval_loss_before']:.3f} → "
              f"{r.metrics['eval_loss_after']:.3f}", flush=True)

    method = get_method("lora")
    model = get_peft_model(method.load_base(path, "cpu"), method.peft_config(method.make_options({}), path))
    model.train()
    floors = {"fp32": bare(model, input_ids, mask, labels, False, 3)}
    if native:
        floors["bf16"] = bare(model, input_ids, mask, labels, True, 3)

    base = results[0]["seconds_per_example"]
    rows = [[r["setting"], r["steps"], f"{r['seconds']:.0f}", f"{r['seconds_per_example']:.2f}",
             f"{base / r['seconds_per_example']:.2f}x", f"{r['eval_loss_before']:.3f} → {r['eval_loss_after']:.3f}"]
            for r in results]
    floor_rows = [[f"bare forward + backward, {k}, all 30 layers", f"{s:.2f}", f"{s / 8:.2f}", f"{tokens / s:.0f}"]
                  for k, s in floors.items()]
    out = {"examples": len(train), "eval_examples": len(held_out), "native_bf16": native,
           "settings": results, "speedup": base / results[-1]["seconds_per_example"],
           "bare_batch_s": floors, "bare_batch_tokens": tokens}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "qgen_speed.json").write_text(json.dumps(out, indent=2))
    write_report("qgen_speed", "Question-writer training speed: what each lever buys", f"""
{len(train)} SQuAD-derived writer examples (questions, claims, keyword queries in turn; batches of 8),
trained by `ragtune train qgen`'s trainer under each setting in turn; held-out loss on {len(held_out)} other
paragraphs. This CPU computes bf16 natively: {native} (where it does not, row 2 is row 1 again).

{table(["setting", "steps", "seconds", "seconds per example", "faster than as filed", "held-out loss before → after"], rows)}

The floor: one batch of 8 ({tokens} tokens, the first 8 examples), forward + backward without the trainer.

{table(["what", "seconds per batch", "seconds per example", "tokens/s"], floor_rows)}
""")


if __name__ == "__main__":
    main()
