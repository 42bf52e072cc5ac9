"""Statistics of a study: per-arm mean with a t-interval, and paired differences to a baseline.

Seeds are the replicates. With n values the 95% interval of the mean is
``mean ± t(0.975, n - 1) · std / sqrt(n)`` (``std`` with n - 1 in the denominator): the interval
the Student t distribution gives for a mean of normally distributed values (``scipy.stats.t``).
Against the baseline, arms are compared on the seeds both have: the per-seed differences
``d = arm - baseline`` get the same interval, the paired t-test's (``scipy.stats.ttest_rel``).
Pairing removes what a seed does to both arms (same initialisation and data order).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

CONFIDENCE = 0.95


def t_interval(values, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The ``confidence`` t-interval of the mean of ``values``; NaNs for fewer than 2 values."""
    import numpy as np
    from scipy import stats

    values = np.asarray(list(values), dtype=float)
    n = len(values)
    if n < 2:
        return math.nan, math.nan
    mean = float(values.mean())
    sem = float(values.std(ddof=1)) / math.sqrt(n)
    if sem == 0.0:
        return mean, mean
    low, high = stats.t.interval(confidence, n - 1, loc=mean, scale=sem)
    return float(low), float(high)


def summarize(values, confidence: float = CONFIDENCE) -> dict[str, float]:
    """n, mean, std (n - 1), the t-interval, min and max of ``values``."""
    import numpy as np

    values = np.asarray(list(values), dtype=float)
    n = len(values)
    low, high = t_interval(values, confidence)
    return {
        "n": n,
        "mean": float(values.mean()) if n else math.nan,
        "std": float(values.std(ddof=1)) if n > 1 else math.nan,
        "ci_low": low,
        "ci_high": high,
        "min": float(values.min()) if n else math.nan,
        "max": float(values.max()) if n else math.nan,
    }


def paired_difference(
    arm: Mapping[int, float], baseline: Mapping[int, float], confidence: float = CONFIDENCE
) -> dict[str, float]:
    """Mean of ``arm[s] - baseline[s]`` over the seeds ``s`` both have, with its t-interval."""
    seeds = sorted(set(arm) & set(baseline))
    differences = [arm[s] - baseline[s] for s in seeds]
    low, high = t_interval(differences, confidence)
    return {
        "n": len(seeds),
        "mean": sum(differences) / len(differences) if differences else math.nan,
        "ci_low": low,
        "ci_high": high,
    }
