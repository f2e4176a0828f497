"""The one proportion interval, against hand-computed answers."""

from __future__ import annotations

import math

import pytest

from models.intervals import wilson_interval


def test_wilson_interval_known_value() -> None:
    low, high = wilson_interval(5, 10)
    assert (low, high) == pytest.approx((0.2366, 0.7634), abs=1e-4)


def test_wilson_upper_bound_by_hand() -> None:
    # 30 hits in 400: p = 0.075, z = 1.6449 (the 90% interval's upper end, one-sided 95%).
    z, n, p = 1.6448536, 400, 0.075
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert wilson_interval(30, 400, level=0.90)[1] == pytest.approx(
        (centre + spread) / (1 + z * z / n), rel=1e-6)


def test_no_trials_know_nothing() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)
