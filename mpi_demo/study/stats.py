"""Paired comparisons against the baseline: the non-inferiority rule and its power.

For a setting and the baseline trained on the same seeds s = 1..n, the paired difference
is ``d_s = acc_setting(s) - acc_baseline(s)`` (test accuracy, fractions). Reported: the
mean of d, its sample standard deviation, the two-sided 95 % interval
``mean +- t(0.975, n-1) * sd / sqrt(n)`` and the one-sided 95 % lower bound
``mean - t(0.95, n-1) * sd / sqrt(n)`` (Student's t). The rule:

* **holds the baseline** (non-inferiority at a margin of one point): the one-sided lower
  bound is above ``-TOLERANCE``, compared with a slack of 1e-9
  (:data:`~mpi_demo.study.plan.SLACK`) for float64 rounding of count / n.

Also reported, as secondary columns: the *mean rule* ``mean(d) >= -TOLERANCE`` and the
*per-seed rule* ``min(d) >= -TOLERANCE`` of the earlier protocol.

**Power.** :func:`power` is the probability that the rule is met when the true mean
difference is ``delta`` and the paired differences have standard deviation ``sd``, in the
normal approximation of the t test: ``Phi((delta + TOLERANCE) / (sd / sqrt(n)) - t(0.95,
n-1))``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from mpi_demo.study.plan import SLACK, TOLERANCE

#: Student's t quantile t(0.975, df) for df = 1..10.
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)
#: Student's t quantile t(0.95, df) for df = 1..10.
T95 = (6.314, 2.920, 2.353, 2.132, 2.015, 1.943, 1.895, 1.860, 1.833, 1.812)


def t95(n: int) -> float:
    """t(0.95, n - 1); the normal quantile 1.645 past the table."""
    return T95[n - 2] if 2 <= n <= len(T95) + 1 else 1.645


def lower_bound(xs: Sequence[float]) -> float:
    """One-sided 95 % lower confidence bound of the mean (Student's t); nan below 2 values."""
    if len(xs) < 2:
        return math.nan
    return mean(xs) - t95(len(xs)) * sample_sd(xs) / math.sqrt(len(xs))


def normal_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def power(sd: float, n: int, delta: float = 0.0) -> float:
    """Probability that the non-inferiority rule is met at true mean difference ``delta``."""
    if n < 2 or sd <= 0:
        return math.nan
    return normal_cdf((delta + TOLERANCE) / (sd / math.sqrt(n)) - t95(n))


def mean(xs: Sequence[float]) -> float:
    return math.fsum(xs) / len(xs)


def sample_sd(xs: Sequence[float]) -> float:
    """Sample standard deviation (n - 1); 0.0 for a single value."""
    if len(xs) < 2:
        return 0.0
    m = mean(xs)
    return math.sqrt(math.fsum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def t_interval(xs: Sequence[float]) -> tuple[float, float]:
    """95 % confidence interval of the mean (Student's t); (nan, nan) below 2 values."""
    n = len(xs)
    if n < 2:
        return math.nan, math.nan
    t = T975[n - 2] if n - 1 <= len(T975) else 1.96
    half = t * sample_sd(xs) / math.sqrt(n)
    m = mean(xs)
    return m - half, m + half


def paired(method_acc: dict[int, float], base_acc: dict[int, float]) -> dict[str, Any]:
    """Paired differences over the seeds both have, their summary and both rules.

    Raises
    ------
    ValueError
        When the two share no seed.
    """
    seeds = sorted(set(method_acc) & set(base_acc))
    if not seeds:
        raise ValueError("no seed in common with the baseline")
    d = [method_acc[s] - base_acc[s] for s in seeds]
    low, high = t_interval(d)
    bound = lower_bound(d)
    return {
        "seeds": seeds,
        "diffs": d,
        "mean_diff": mean(d),
        "sd_diff": sample_sd(d),
        "ci_low": low,
        "ci_high": high,
        "lower_bound": bound,
        "holds": bool(bound > -TOLERANCE - SLACK),
        "power": power(sample_sd(d), len(d)),
        "min_diff": min(d),
        "worst_seed": seeds[d.index(min(d))],
        "mean_rule": mean(d) >= -TOLERANCE - SLACK,
        "seed_rule": min(d) >= -TOLERANCE - SLACK,
    }
