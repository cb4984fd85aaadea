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
                   tie_tolerance: float = 1e-9, weights: dict[str, float] | None = None) -> Comparison:
    """Compare per-query scores of system A and system B over the queries both have.

    ``weights`` (query → weight ≥ 0): the means, difference, test and interval are weighted (a
    sample re-weighted toward another population, e.g. the tuner's synthetic questions toward
    the users' kind of query); the test flips the sign of each weighted difference."""
    from scipy import stats

    common = sorted(set(a) & set(b))
    if weights is not None:
        common = [q for q in common if weights.get(q, 0.0) > 0]
    if len(common) < 2:
        raise InputError(f"need at least 2 shared queries to compare, got {len(common)}")
    x = np.array([a[q] for q in common])
    y = np.array([b[q] for q in common])
    w = np.array([weights[q] for q in common]) if weights is not None else np.ones(len(common))
    w = w / w.sum()
    d = y - x
    if np.allclose(d, 0):
        p, lo, hi = 1.0, 0.0, 0.0
    elif weights is None:
        rng = np.random.default_rng(seed)
        test = stats.permutation_test((x, y), lambda u, v: np.mean(v - u), permutation_type="samples",
                                      n_resamples=resamples, alternative="two-sided", random_state=rng)
        p = float(test.pvalue)
        boot = stats.bootstrap((d,), np.mean, n_resamples=resamples, confidence_level=0.95, random_state=rng,
                               method="percentile")
        lo, hi = float(boot.confidence_interval.low), float(boot.confidence_interval.high)
    else:
        p, lo, hi = _weighted_test(d, w, resamples, np.random.default_rng(seed))
    def mean(v: np.ndarray) -> float:  # unweighted: the plain mean, to the last digit
        return float(v.mean()) if weights is None else float(w @ v)

    return Comparison(
        n=len(common), mean_a=mean(x), mean_b=mean(y), delta=mean(d), p_value=p,
        ci_low=lo, ci_high=hi,
        wins=int((d > tie_tolerance).sum()), ties=int((np.abs(d) <= tie_tolerance).sum()),
        losses=int((d < -tie_tolerance).sum()),
    )


def _weighted_test(d: np.ndarray, w: np.ndarray, resamples: int, rng: np.random.Generator) -> tuple[float, float, float]:
    """Sign-flip randomisation p-value and percentile bootstrap CI of the weighted mean difference
    (SciPy's tests take no weights). ``w`` sums to 1."""
    observed = abs(float(w @ d))
    flips = rng.choice((-1.0, 1.0), size=(resamples, len(d)))
    null = np.abs(flips @ (w * d))
    p = float((np.sum(null >= observed - 1e-12) + 1) / (resamples + 1))
    picks = rng.integers(0, len(d), size=(resamples, len(d)))
    boot = (w[picks] * d[picks]).sum(axis=1) / w[picks].sum(axis=1)
    return p, float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))


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
