"""A/B statistics against hand-computed answers, and the decision rules."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from scipy import integrate, stats

from models.ab import (
    ArmMeasure,
    ExperimentDesign,
    Guardrail,
    InvalidDesignError,
    Look,
    Measurement,
    decide,
    measure,
    msprt_statistic,
    sample_size_per_arm,
    sequential_test,
    srm_check,
    wilson_interval,
)

START = "2026-11-01T00:00:00+00:00"
SOON = datetime(2026, 11, 2, tzinfo=UTC)


def test_srm_chi_square_matches_hand_computation() -> None:
    # 10,000 exposures planned 50/50, observed 5,250 / 4,750: each cell is 250 off 5,000.
    result = srm_check([5250, 4750], [0.5, 0.5])
    assert result.chi2 == pytest.approx(2 * 250**2 / 5000)  # 25.0
    # One degree of freedom: P(chi2_1 > x) = erfc(sqrt(x / 2)).
    assert result.p_value == pytest.approx(math.erfc(math.sqrt(25.0 / 2)))
    assert result.mismatch


def test_srm_accepts_a_split_matching_its_plan() -> None:
    result = srm_check([2990, 7010], [0.3, 0.7])  # expected 3000 / 7000
    assert result.chi2 == pytest.approx(100 / 3000 + 100 / 7000)
    assert not result.mismatch


def test_srm_detects_a_five_point_skew_at_50k() -> None:
    assert srm_check([27_500, 22_500], [0.5, 0.5]).mismatch


def test_msprt_statistic_matches_hand_computation() -> None:
    theta, variance, log_lambda = msprt_statistic(100, 1000, 130, 1000, tau2=1e-3)
    assert theta == pytest.approx(0.03)
    assert variance == pytest.approx(0.1 * 0.9 / 1000 + 0.13 * 0.87 / 1000)  # 2.031e-4
    # 0.5 ln(V / (V + tau2)) + theta^2 tau2 / (2 V (V + tau2)), worked by hand:
    # 0.5 ln(0.16881) = -0.88949; 9e-7 / 4.8870e-7 = 1.84163.
    assert log_lambda == pytest.approx(0.95214, abs=1e-4)


def test_msprt_statistic_equals_the_mixture_likelihood_ratio_integral() -> None:
    # Independent route: integrate the normal likelihood over the N(0, tau2) mixing prior.
    theta, variance, log_lambda = msprt_statistic(60, 800, 84, 900, tau2=5e-4)
    sd = math.sqrt(variance)
    numerator, _ = integrate.quad(
        lambda t: stats.norm.pdf(theta, t, sd) * stats.norm.pdf(t, 0, math.sqrt(5e-4)),
        -1, 1, points=[0.0, theta],
    )
    assert log_lambda == pytest.approx(math.log(numerator / stats.norm.pdf(theta, 0, sd)),
                                       abs=1e-6)


def test_wilson_interval_known_value() -> None:
    low, high = wilson_interval(5, 10)
    assert (low, high) == pytest.approx((0.2366, 0.7634), abs=1e-4)


def test_sample_size_known_value() -> None:
    # (1.96 + 1.2816)^2 (0.09 + 0.1056) / 0.02^2 = 5138.2 -> 5139.
    assert sample_size_per_arm(0.10, 0.12, 0.05, 0.9) == 5139


def _looks(rng: np.random.Generator, p_c: float, p_t: float, n: int, k: int) -> list[Look]:
    """k cumulative looks at n per arm in total."""
    step = n // k
    xc = np.cumsum(rng.binomial(step, p_c, k))
    xt = np.cumsum(rng.binomial(step, p_t, k))
    return [Look(i, step * (i + 1), int(xc[i]), step * (i + 1), int(xt[i])) for i in range(k)]


def test_always_valid_interval_covers_the_true_effect() -> None:
    rng = np.random.default_rng(1)
    covered = 0
    for _ in range(200):
        result = sequential_test(_looks(rng, 0.10, 0.12, 4000, 10), tau2=1e-4, alpha=0.05)
        covered += result.ci_low <= 0.02 <= result.ci_high
    assert covered / 200 >= 0.95


def test_repeated_looks_keep_the_a_a_false_positive_rate_low() -> None:
    rng = np.random.default_rng(2)
    rejected = sum(
        sequential_test(_looks(rng, 0.1, 0.1, 6000, 30), 1e-4, 0.05).rejected for _ in range(200)
    )
    assert rejected / 200 <= 0.05


def test_p_value_is_non_increasing_over_looks() -> None:
    result = sequential_test(_looks(np.random.default_rng(3), 0.1, 0.13, 6000, 12), 1e-4, 0.05)
    p_values = [row[2] for row in result.history]
    assert all(b <= a for a, b in zip(p_values, p_values[1:], strict=False))
    assert result.rejected and result.effect > 0


def test_design_round_trips_and_rejects_nonsense() -> None:
    design = ExperimentDesign(min_sample=50, guardrails=(Guardrail("rating", 0.2),),
                              primary_metric=("click",))
    assert ExperimentDesign.from_json(design.to_json()) == design
    with pytest.raises(InvalidDesignError, match="primary_metric"):
        ExperimentDesign(primary_metric=("purchase",))
    with pytest.raises(InvalidDesignError, match="unknown design fields"):
        ExperimentDesign.from_dict({"min_samples": 3})


# --- measurement --------------------------------------------------------------------------
@dataclass(frozen=True)
class Ev:
    type: str
    user_id: int
    book_id: int
    variant: str
    ts_ms: int
    version: str = "v1"
    experiment: str | None = "exp"


def test_measure_attributes_conversions_within_the_window_only() -> None:
    design = ExperimentDesign(attribution_window_s=10)
    events = [
        Ev("impression", 1, 10, "control", 0),
        Ev("impression", 1, 10, "control", 5),  # repeated impression: one exposure
        Ev("click", 1, 10, "control", 2_000),
        Ev("add_to_shelf", 1, 10, "control", 3_000),  # same exposure: one conversion
        Ev("impression", 2, 11, "treatment", 0, version="v2"),
        Ev("click", 2, 11, "treatment", 60_000, version="v2"),  # past the window
        Ev("click", 2, 12, "treatment", 100, version="v2"),  # never shown
        Ev("impression", 3, 10, "treatment", 0, version="v2"),  # assignment says control
        Ev("impression", 4, 10, "control", 0, experiment="other"),
    ]
    assign = {1: "control", 2: "treatment", 3: "control", 4: "control"}
    result = measure(events, "exp", ["control", "treatment"], assign.__getitem__, design)
    control, treatment = result.arms["control"], result.arms["treatment"]
    assert (control.exposures, control.conversions) == (1, 1)
    assert control.by_type == {"click": 1, "add_to_shelf": 1}
    assert (treatment.exposures, treatment.conversions) == (1, 0)
    assert treatment.versions == {"v2": [1, 0]}
    assert result.misassigned == 1
    assert result.looks[-1] == Look(0, 1, 1, 1, 0)


def test_measure_ignores_events_before_the_experiment_started() -> None:
    events = [Ev("impression", 1, 10, "control", 100), Ev("impression", 1, 11, "control", 900)]
    result = measure(events, "exp", ["control", "treatment"], lambda _: "control",
                     ExperimentDesign(), since_ms=500)
    assert result.arms["control"].exposures == 1


# --- decisions ----------------------------------------------------------------------------
def _measurement(n_c: int, x_c: int, n_t: int, x_t: int,
                 ratings: tuple[int, int] = (0, 0)) -> Measurement:
    control = ArmMeasure("control", n_c, x_c, {"click": x_c, "rating": ratings[0]})
    treatment = ArmMeasure("treatment", n_t, x_t, {"click": x_t, "rating": ratings[1]})
    looks = [Look(i, n_c * i // 10, x_c * i // 10, n_t * i // 10, x_t * i // 10)
             for i in range(1, 11)]
    return Measurement({"control": control, "treatment": treatment}, looks, 0, 0, 1)


def test_a_clear_win_promotes() -> None:
    decision = decide(ExperimentDesign(), _measurement(10_000, 1000, 10_000, 1300),
                      [0.5, 0.5], START, SOON)
    assert decision.action == "promote"
    assert decision.test.ci_low > 0


def test_a_clear_loss_stops() -> None:
    decision = decide(ExperimentDesign(), _measurement(10_000, 1300, 10_000, 1000),
                      [0.5, 0.5], START, SOON)
    assert decision.action == "stop" and "worse" in decision.reason


def test_sample_ratio_mismatch_blocks_even_a_clear_win() -> None:
    decision = decide(ExperimentDesign(), _measurement(12_000, 1200, 10_000, 1300),
                      [0.5, 0.5], START, SOON)
    assert decision.srm.mismatch
    assert decision.action == "continue" and "mismatch" in decision.reason


def test_guardrail_vetoes_a_win() -> None:
    design = ExperimentDesign(guardrails=(Guardrail("rating", 0.2),))
    decision = decide(design, _measurement(10_000, 1000, 10_000, 1300, ratings=(500, 300)),
                      [0.5, 0.5], START, SOON)
    assert decision.action == "stop" and "veto" in decision.reason
    assert decision.guardrails[0].relative_change == pytest.approx(-0.4)


def test_below_minimum_sample_continues_until_max_duration_forces_a_stop() -> None:
    design = ExperimentDesign(min_sample=5000, max_duration_s=86400)
    measurement = _measurement(1000, 100, 1000, 200)
    assert decide(design, measurement, [0.5, 0.5], START,
                  datetime(2026, 11, 1, 12, tzinfo=UTC)).action == "continue"
    late = datetime.fromisoformat(START) + timedelta(days=2)
    assert decide(design, measurement, [0.5, 0.5], START, late).action == "stop"


def test_max_duration_stops_an_undecided_experiment() -> None:
    design = ExperimentDesign(max_duration_s=86400)
    measurement = _measurement(5000, 500, 5000, 505)
    assert decide(design, measurement, [0.5, 0.5], START, SOON).action == "stop"
    assert decide(design, measurement, [0.5, 0.5], START,
                  datetime(2026, 11, 1, 1, tzinfo=UTC)).action == "continue"
