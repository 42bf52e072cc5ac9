"""Statistics of a study: per-arm mean with a t-interval, and paired differences to a baseline.

Seeds are the replicates. The 95% interval of an arm's mean is the one-sample t-test's
(``scipy.stats.ttest_1samp(...).confidence_interval``: ``mean ± t(0.975, n - 1) · std / sqrt(n)``,
``std`` with n - 1 in the denominator). Against the baseline, arms are compared on the seeds both
have, with the paired t-test's interval of the mean difference ``arm - baseline``
(``scipy.stats.ttest_rel``). Pairing removes what a seed does to both arms (same initialisation
and data order).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

CONFIDENCE = 0.95


def _interval(values, test, confidence: float) -> tuple[float, float]:
    """``test(values)``'s interval; NaNs for fewer than 2 values, the mean for equal ones (where
    scipy's moments lose precision)."""
    import numpy as np

    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return math.nan, math.nan
    if np.all(values == values[0]):
        return float(values[0]), float(values[0])
    interval = test().confidence_interval(confidence)
    return float(interval.low), float(interval.high)


def t_interval(values, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The ``confidence`` t-interval of the mean of ``values``; NaNs for fewer than 2 values."""
    from scipy import stats

    values = [float(v) for v in values]
    return _interval(values, lambda: stats.ttest_1samp(values, 0.0), confidence)


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
    """Mean of ``arm[s] - baseline[s]`` over the seeds ``s`` both have, with the paired t-test's
    interval."""
    from scipy import stats

    seeds = sorted(set(arm) & set(baseline))
    ours, theirs = [float(arm[s]) for s in seeds], [float(baseline[s]) for s in seeds]
    differences = [a - b for a, b in zip(ours, theirs, strict=True)]
    low, high = _interval(differences, lambda: stats.ttest_rel(ours, theirs), confidence)
    return {
        "n": len(seeds),
        "mean": sum(differences) / len(differences) if differences else math.nan,
        "ci_low": low,
        "ci_high": high,
    }
