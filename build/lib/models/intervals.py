"""Confidence intervals of a proportion, the one definition the project uses (SciPy's)."""

from __future__ import annotations

from scipy import stats


def wilson_interval(successes: int, trials: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson's score interval of a binomial proportion at ``level`` (two-sided).

    With no trials nothing is known: (0, 1). The upper end of the 90% interval is the
    one-sided 95% upper bound.
    """
    if trials <= 0:
        return 0.0, 1.0
    found = stats.binomtest(int(successes), int(trials)).proportion_ci(
        confidence_level=level, method="wilson")
    return float(found.low), float(found.high)
