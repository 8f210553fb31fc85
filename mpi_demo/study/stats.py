"""Paired comparisons against the baseline and the two "within one point" rules.

For a method's chosen setting and the baseline trained on the same seeds s = 1..n, the
paired difference is ``d_s = acc_method(s) - acc_baseline(s)`` (test accuracy, fractions).
Reported: the mean of d, its sample standard deviation, and the 95 % confidence interval
``mean +- t(0.975, n-1) * sd / sqrt(n)`` (Student's t; with 3 seeds t = 4.303, so the
interval is wide: it says how little 3 seeds can tell apart). The rules:

* *mean rule*: ``mean(d) >= -TOLERANCE``;
* *per-seed rule*: ``min(d) >= -TOLERANCE`` (every seed within one point of its baseline);

both inclusive: a difference of exactly one point passes (compared with a slack of 1e-9,
:data:`~mpi_demo.study.plan.SLACK`, for float64 rounding of count / n).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from mpi_demo.study.plan import SLACK, TOLERANCE

#: Student's t quantile t(0.975, df) for df = 1..10.
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


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
    return {
        "seeds": seeds,
        "diffs": d,
        "mean_diff": mean(d),
        "sd_diff": sample_sd(d),
        "ci_low": low,
        "ci_high": high,
        "min_diff": min(d),
        "mean_rule": mean(d) >= -TOLERANCE - SLACK,
        "seed_rule": min(d) >= -TOLERANCE - SLACK,
    }
