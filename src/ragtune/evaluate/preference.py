"""The gate of a preference adapter: does the tuned model prefer the users' chosen answers more
often than the base, on held-out pairs (newer than the training ones)?

Per pair, "right" is the chosen answer having the higher log-probability (the margins
:func:`ragtune.train.preference.preference_accuracy` returns, before and after training); the two
are compared paired (:func:`ragtune.evaluate.compare.compare_paired`). The adapter passes only when
its accuracy is higher with p below ``alpha``: ten steps that leave accuracy where it was are
refused, and so is a gain a coin could give.

Example:
    >>> before = [-1.0] * 30 + [1.0] * 10
    >>> preference_gate(before, [1.0] * 30 + [1.0] * 10)["promote"]
    True
    >>> g = preference_gate(before, [m + 0.1 for m in before])
    >>> g["promote"], g["why"]
    (False, 'held-out preference accuracy 0.250 → 0.250 (40 pairs), p=1.0000: not better')
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ragtune.errors import InputError
from ragtune.evaluate.compare import compare_paired


def preference_gate(before: list[float], after: list[float], alpha: float = 0.05) -> dict[str, Any]:
    """The verdict on margins of the same held-out pairs before and after training."""
    if len(before) != len(after) or len(before) < 2:
        raise InputError(f"the gate needs the same ≥ 2 held-out pairs before and after, got {len(before)} and {len(after)}")
    right_before = {str(i): float(m > 0) for i, m in enumerate(before)}
    right_after = {str(i): float(m > 0) for i, m in enumerate(after)}
    c = compare_paired(right_before, right_after)
    promote = c.delta > 0 and c.p_value < alpha
    why = (f"held-out preference accuracy {c.mean_a:.3f} → {c.mean_b:.3f} ({c.n} pairs), p={c.p_value:.4f}: "
           + ("better" if promote else "not better"))
    return {"promote": promote, "pairs": c.n, "accuracy_before": c.mean_a, "accuracy_after": c.mean_b,
            "delta": c.delta, "ci": [c.ci_low, c.ci_high], "p_value": c.p_value, "wins_ties_losses": [c.wins, c.ties, c.losses],
            "margin_before": sum(before) / len(before), "margin_after": sum(after) / len(after), "why": why}


def score_adapter(base_model: str, adapter: str, pairs: list[dict[str, Any]], max_length: int = 1024,
                  home: str | None = None, device: str | None = None, alpha: float = 0.05) -> dict[str, Any]:
    """The gate, re-asked on ``pairs`` (exported preference pairs) the adapter never trained on —
    newer feedback, say: the base's and base + adapter's margins on the same pairs, each prompt
    cut to ``max_length`` as training cuts it. Pairs that cannot fit are left out and counted.
    ``adapter``: a registry name (scored even if its gate refused it: scoring is not serving) or folder."""
    from ragtune.models.adapters import AdapterRegistry
    from ragtune.models.generator import LocalGenerator
    from ragtune.train.preference import dpo_rows, pair_fitter, preference_accuracy

    registry = AdapterRegistry(home)
    folder = registry.path(adapter) if registry.exists(adapter) else Path(adapter)
    if not folder.exists():
        raise InputError(f"no adapter {adapter!r}: give a name from `ragtune adapters list` or an adapter folder")
    base = LocalGenerator(base_model, device=device, home=home)
    rows = dpo_rows(pairs, fit=pair_fitter(base.tokenizer, max_length))
    if len(rows) < 2:
        raise InputError(f"{len(pairs)} preference pairs, {len(rows)} within max_length {max_length}: "
                         "need at least 2 to compare (raise --max-length or give more pairs)")
    before = preference_accuracy(base.model, base.tokenizer, rows, base.device)["margins"]
    del base  # one 135M copy at a time is plenty; a larger base would not fit twice
    tuned = LocalGenerator(base_model, device=device, home=home, adapter=str(folder))
    after = preference_accuracy(tuned.model, tuned.tokenizer, rows, tuned.device)["margins"]
    return {**preference_gate(before, after, alpha), "too_long": len(pairs) - len(rows)}
