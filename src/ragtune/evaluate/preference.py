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
