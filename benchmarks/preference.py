"""Preference tuning (DPO, KTO) of SmolLM2-135M with LoRA: held-out preference accuracy before/after.

Pairs are built from SQuAD v1.1 dev the way feedback would build them: a question, its passage
(as the answerer shows it: numbered, with ragtune's system prompt), the gold answer with its
citation as *chosen*, and as *rejected* the answer of another question on the **same passage** —
fluent, grounded-looking and wrong, the hard case for a reader. KTO gets the same answers
unpaired (chosen rated up, rejected rated down). Train and held-out pairs come from disjoint
articles. Accuracy: share of held-out pairs whose chosen answer the model finds more likely
(summed log-probability); paired sign test on per-pair margins (after vs before).

Run from the repo root:  .venv/bin/python benchmarks/preference.py [--train 96 --held 96 --steps 60]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import CACHE, DATA, RESULTS, git_commit, table, write_report  # noqa: E402

from ragtune.train.preference import (  # noqa: E402
    PreferenceTrainConfig,
    dpo_rows,
    preference_accuracy,
    train_preferences,
)


def pairs(articles: list[dict], n: int, seed: int) -> list[dict]:
    out = []
    for a in articles:
        for p in a["paragraphs"]:
            qas = [qa for qa in p["qas"] if qa["answers"]]
            for i, qa in enumerate(qas):
                gold = qa["answers"][0]["text"]
                others = [q["answers"][0]["text"] for q in qas if q["answers"][0]["text"].lower() != gold.lower()
                          and gold.lower() not in q["answers"][0]["text"].lower()]
                if others and len(p["context"]) <= 900:
                    out.append({"prompt": qa["question"], "context": [p["context"]], "chosen": f"{gold} [1].",
                                "rejected": f"{random.Random(seed + i).choice(others)} [1]."})
    random.Random(seed).shuffle(out)
    return out[:n]


def margins_sign_test(before: list[float], after: list[float]) -> float:
    """Two-sided sign test on per-pair margin changes."""
    from scipy.stats import binomtest

    ups = sum(a > b for a, b in zip(after, before))
    downs = sum(a < b for a, b in zip(after, before))
    return float(binomtest(ups, ups + downs).pvalue) if ups + downs else 1.0


def per_pair(model, tokenizer, held: list[dict]) -> list[float]:
    return [preference_accuracy(model, tokenizer, [h], "cpu")["margin"] for h in held]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=int, default=96)
    ap.add_argument("--held", type=int, default=96)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--objectives", default="dpo,kto")
    args = ap.parse_args()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ragtune.models.generator import base_model_path

    data = json.loads((DATA / "squad" / "dev-v1.1.json").read_text())["data"]
    train, held = pairs(data[:24], args.train, 0), pairs(data[30:], args.held, 1)
    home = CACHE / "preference-home"
    path = base_model_path("SmolLM2-135M-Instruct", home)
    tokenizer = AutoTokenizer.from_pretrained(path)
    held_rows = dpo_rows(held)
    base = AutoModelForCausalLM.from_pretrained(path)
    before = per_pair(base, tokenizer, held_rows)
    del base
    results: dict = {"train_pairs": len(train), "held_pairs": len(held), "steps": args.steps,
                     "base": {"accuracy": sum(m > 0 for m in before) / len(before), "margin": sum(before) / len(before)}}
    rows = []
    for objective in args.objectives.split(","):
        data_rows = train if objective == "dpo" else [
            {"prompt": r["prompt"], "context": r["context"], "completion": r[k], "label": k == "chosen"}
            for r in train for k in ("chosen", "rejected")]
        res = train_preferences("SmolLM2-135M-Instruct", data_rows, CACHE / f"preference-{objective}",
                                PreferenceTrainConfig(objective=objective, max_steps=args.steps), home=home)
        after = per_pair(res.model, tokenizer, held_rows)
        r = {"accuracy": sum(m > 0 for m in after) / len(after), "margin": sum(after) / len(after),
             "margin_gain_p": margins_sign_test(before, after), "train_loss": res.train_loss,
             "seconds": res.seconds, "trainable_parameters": res.trainable_parameters}
        results[objective] = r
        rows.append([objective, f"{results['base']['accuracy']:.3f}", f"{r['accuracy']:.3f}",
                     f"{results['base']['margin']:+.2f}", f"{r['margin']:+.2f}", f"{r['margin_gain_p']:.4f}",
                     f"{r['seconds']:.0f}"])
        print(objective, json.dumps(r), flush=True)
    results["measured_at_commit"] = git_commit()
    (RESULTS / "preference.json").write_text(json.dumps(results, indent=2))
    body = f"""
SmolLM2-135M-Instruct + LoRA (r 16, ragtune's default), {args.steps} steps, batch 4, β 0.1,
learning rate a quarter of LoRA's SFT rate. {len(train)} training pairs (SQuAD dev articles 0-23),
{len(held)} held-out pairs (articles 30+): chosen = gold answer + citation, rejected = another
question's answer on the same passage. KTO trains on the same answers unpaired (2 × {len(train)} rows).

{table(["objective", "held-out accuracy before", "after", "mean margin before (nats)", "after", "sign test p (margins)", "train s"], rows)}
"""
    write_report("preference", "Preference tuning: DPO and KTO on LoRA", body)


if __name__ == "__main__":
    main()
