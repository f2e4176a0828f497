"""The statistics: the sample-ratio check, the cluster-robust variance, the mSPRT and its
always-valid interval."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats

from models.ab.measurement import Look, ReaderSums


@dataclass(frozen=True)
class SrmResult:
    """Sample-ratio-mismatch check: chi-square of observed against planned counts."""

    chi2: float
    p_value: float
    mismatch: bool


def srm_check(
    observed: Sequence[int], shares: Sequence[float], threshold: float = 0.001
) -> SrmResult:
    """Chi-square goodness of fit of the arms' counts to the planned split.

    A p-value below ``threshold`` (conventionally 0.001: the check runs at every look)
    means the assignment or logging is broken, and no decision may be drawn.
    """
    if len(observed) != len(shares) or len(observed) < 2:
        raise ValueError("observed and shares need the same length, at least 2")
    total = sum(observed)
    share_sum = sum(shares)
    if total == 0:
        return SrmResult(0.0, 1.0, False)
    expected = [total * share / share_sum for share in shares]
    if any(count and not e for count, e in zip(observed, expected, strict=True)):
        return SrmResult(math.inf, 0.0, True)  # readers in an arm planned to get none
    # Arms planned at 0% that got nobody tell nothing: the test is over the others.
    kept = [(count, e) for count, e in zip(observed, expected, strict=True) if e > 0]
    if len(kept) < 2:
        return SrmResult(0.0, 1.0, False)
    found = stats.chisquare([c for c, _ in kept], [e for _, e in kept])
    return SrmResult(float(found.statistic), float(found.pvalue),
                     bool(found.pvalue < threshold))


def ratio_variance(conversions: int, exposures: int, sums: ReaderSums | None = None) -> float:
    """Variance of an arm's rate conversions / exposures, clustered by reader (delta method).

    N / (N - 1) * sum_i (c_i - r m_i)^2 / M^2 with r = C / M, where the sum of squares is
    sum c^2 - 2 r sum m*c + r^2 sum m^2; evaluated as M^2 sum c^2 - 2 C M sum m*c +
    C^2 sum m^2 over M^4 in exact integers, so no cancellation creeps in. Without ``sums``
    every exposure is its own reader and the result is the binomial r(1 - r) / M. Infinite
    (no information yet) with no exposures, or with fewer than two readers.
    """
    if exposures <= 0:
        return math.inf
    if sums is None:
        rate = conversions / exposures
        return rate * (1 - rate) / exposures
    if sums.readers < 2:
        return math.inf
    m, c = exposures, conversions
    scaled = m * m * sums.sum_c2 - 2 * c * m * sums.sum_mc + c * c * sums.sum_m2
    return sums.readers / (sums.readers - 1) * max(scaled, 0) / m**4


def msprt_statistic(
    x_control: int, n_control: int, x_treatment: int, n_treatment: int, tau2: float,
    sums_control: ReaderSums | None = None, sums_treatment: ReaderSums | None = None,
) -> tuple[float, float, float]:
    """(theta_hat, V, log Lambda) of the normal-mixture mSPRT for p_treatment - p_control.

    V is the sum of the arms' ``ratio_variance``: cluster-robust given the per-reader sums,
    binomial without them.
    """
    if min(n_control, n_treatment) <= 0:
        return 0.0, math.inf, 0.0
    p_c, p_t = x_control / n_control, x_treatment / n_treatment
    theta = p_t - p_c
    variance = (ratio_variance(x_control, n_control, sums_control)
                + ratio_variance(x_treatment, n_treatment, sums_treatment))
    if math.isinf(variance):
        return theta, math.inf, 0.0
    if variance <= 0:
        # Both rates are 0 or 1: no information about a difference yet.
        return theta, 0.0, 0.0
    log_lambda = 0.5 * math.log(variance / (variance + tau2)) + theta**2 * tau2 / (
        2 * variance * (variance + tau2)
    )
    return theta, variance, log_lambda


def always_valid_half_width(variance: float, tau2: float, alpha: float) -> float:
    """Half-width of the always-valid interval at plug-in variance ``variance``."""
    if variance <= 0 or math.isinf(variance):
        return math.inf
    return math.sqrt(
        variance * (variance + tau2) / tau2
        * (2 * math.log(1 / alpha) + math.log((variance + tau2) / variance))
    )


@dataclass(frozen=True)
class SequentialResult:
    """The mSPRT after the latest look: estimate, always-valid p-value and interval."""

    effect: float
    p_value: float
    ci_low: float
    ci_high: float
    rejected: bool
    history: tuple[tuple[int, float, float, float, float], ...]  # ts, effect, p, low, high


def sequential_test(looks: Sequence[Look], tau2: float, alpha: float) -> SequentialResult:
    """Run the mSPRT over the looks in order; p-values and intervals are always valid."""
    p_value, low, high = 1.0, -math.inf, math.inf
    effect = 0.0
    history = []
    for look in looks:
        effect, variance, log_lambda = msprt_statistic(
            look.x_control, look.n_control, look.x_treatment, look.n_treatment, tau2,
            look.sums_control, look.sums_treatment,
        )
        p_value = min(p_value, math.exp(-log_lambda) if log_lambda > 0 else 1.0)
        half = always_valid_half_width(variance, tau2, alpha)
        low, high = max(low, effect - half), min(high, effect + half)
        if low > high:
            # Intersections of always-valid intervals can cross only by chance (prob <= alpha);
            # keep the latest interval then rather than an empty one.
            low, high = effect - half, effect + half
        history.append((look.ts_ms, effect, p_value, low, high))
    return SequentialResult(effect, p_value, low, high, p_value <= alpha, tuple(history))


def carry_over(result: SequentialResult, kept: Sequence[Sequence[float]], alpha: float
               ) -> SequentialResult:
    """The test with the looks earlier evaluations kept (``history`` rows) folded in.

    Each evaluation rebuilds its looks from the events; without what earlier ones saw, a
    p-value that once crossed alpha could come back above it and a verdict flip back. The
    running minimum p-value and the intersection of intervals over every look ever taken stay
    always valid (they are looks of the same sequence), so they only tighten.
    """
    history = tuple(sorted({tuple(float(v) for v in row) for row in [*kept, *result.history]}))
    if not history:
        return result
    p_value = min(min(row[2] for row in history), result.p_value)
    low = max(row[3] for row in history)
    high = min(row[4] for row in history)
    if low > high:  # crossing intervals happen only by chance (prob <= alpha): keep the latest
        low, high = result.ci_low, result.ci_high
    return SequentialResult(result.effect, p_value, low, high, p_value <= alpha,
                            history)  # type: ignore[arg-type]


def looks_key(prefix: str, name: str) -> str:
    """Where the looks of an experiment's evaluations are kept, beside its design."""
    return f"{prefix}experiment:{name}:looks"
