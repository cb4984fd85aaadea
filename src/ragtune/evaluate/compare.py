"""Paired comparison of two systems on the same queries: mean difference, a paired
randomisation (sign-flip permutation) test from SciPy, a bootstrap confidence interval, and
win / tie / loss counts.

Example:
    >>> from ragtune.evaluate.compare import compare_paired
    >>> a = {f"q{i}": 0.5 for i in range(30)}
    >>> b = {f"q{i}": 0.7 for i in range(30)}
    >>> c = compare_paired(a, b)
    >>> (round(c.delta, 2), c.wins, c.losses, c.p_value < 0.01)
    (0.2, 30, 0, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ragtune.errors import InputError


@dataclass
class Comparison:
    n: int
    mean_a: float
    mean_b: float
    delta: float  # mean(b - a)
    p_value: float  # two-sided, paired randomisation test
    ci_low: float  # 95% bootstrap CI of the mean difference
    ci_high: float
    wins: int  # queries where b > a
    ties: int
    losses: int

    def to_dict(self) -> dict:
        return dict(vars(self))


def compare_paired(a: dict[str, float], b: dict[str, float], resamples: int = 10_000, seed: int = 0,
                   tie_tolerance: float = 1e-9) -> Comparison:
    """Compare per-query scores of system A and system B over the queries both have."""
    from scipy import stats

    common = sorted(set(a) & set(b))
    if len(common) < 2:
        raise InputError(f"need at least 2 shared queries to compare, got {len(common)}")
    x = np.array([a[q] for q in common])
    y = np.array([b[q] for q in common])
    d = y - x
    if np.allclose(d, 0):
        p, lo, hi = 1.0, 0.0, 0.0
    else:
        rng = np.random.default_rng(seed)
        test = stats.permutation_test((x, y), lambda u, v: np.mean(v - u), permutation_type="samples",
                                      n_resamples=resamples, alternative="two-sided", random_state=rng)
        p = float(test.pvalue)
        boot = stats.bootstrap((d,), np.mean, n_resamples=resamples, confidence_level=0.95, random_state=rng,
                               method="percentile")
        lo, hi = float(boot.confidence_interval.low), float(boot.confidence_interval.high)
    return Comparison(
        n=len(common), mean_a=float(x.mean()), mean_b=float(y.mean()), delta=float(d.mean()), p_value=p,
        ci_low=lo, ci_high=hi,
        wins=int((d > tie_tolerance).sum()), ties=int((np.abs(d) <= tie_tolerance).sum()),
        losses=int((d < -tie_tolerance).sum()),
    )


def plot_deltas(a: dict[str, float], b: dict[str, float], measure: str, name_a: str, name_b: str, path: Path) -> None:
    """Bar chart of per-query differences B − A, sorted (green: B better)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    deltas = sorted(b[q] - a[q] for q in set(a) & set(b))
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(range(len(deltas)), deltas, width=1.0, color=["#c0392b" if d < 0 else "#27ae60" for d in deltas])
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xlabel("queries (sorted by difference)")
    ax.set_ylabel(f"Δ {measure} (B − A)")
    ax.set_title(f"{measure}: B = {name_b}\nvs A = {name_a}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
