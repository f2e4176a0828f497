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
    ReaderSums,
    carry_over,
    decide,
    measure,
    msprt_statistic,
    ratio_variance,
    sequential_test,
    srm_check,
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
    assert (control.readers, treatment.readers) == (1, 1)  # reader 3 was misassigned
    assert result.misassigned == 1
    # One reader per arm with one exposure: (readers, sum m^2, sum c^2, sum m*c).
    assert result.looks[-1] == Look(0, 1, 1, 1, 0, ReaderSums(1, 1, 1, 1), ReaderSums(1, 1, 0, 0))


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


def test_a_guardrail_dip_within_the_noise_makes_a_win_wait_not_stop() -> None:
    # Ratings 50 vs 38 per 10,000 exposures: the point estimate is -24% (past the -20%
    # bound), but the always-valid interval of the difference, about [-0.0043, +0.0019],
    # holds the bound -0.001 and zero alike: neither a veto nor a clearance.
    design = ExperimentDesign(guardrails=(Guardrail("rating", 0.2),))
    measurement = _measurement(10_000, 1000, 10_000, 1300, ratings=(50, 38))
    decision = decide(design, measurement, [0.5, 0.5], START, SOON)
    (guard,) = decision.guardrails
    assert guard.relative_change == pytest.approx(-0.24)
    assert guard.ci_low < guard.bound < guard.ci_high and guard.status == "undecided"
    assert decision.action == "continue" and "waiting until guardrails" in decision.reason
    late = datetime.fromisoformat(START) + timedelta(days=30)
    assert decide(design, measurement, [0.5, 0.5], START, late).action == "stop"


def test_a_guardrail_shown_within_its_bound_lets_a_win_promote() -> None:
    design = ExperimentDesign(guardrails=(Guardrail("rating", 0.2),))
    decision = decide(design, _measurement(10_000, 1000, 10_000, 1300, ratings=(500, 520)),
                      [0.5, 0.5], START, SOON)
    (guard,) = decision.guardrails
    assert guard.status == "within" and guard.ci_low > guard.bound == pytest.approx(-0.01)
    assert decision.action == "promote"


def test_guardrail_interval_by_hand() -> None:
    # Binomial variance without per-reader sums: 0.05*0.95/1e4 + 0.03*0.97/1e4 = 7.66e-6;
    # the mSPRT half-width at tau^2 = 1e-4, alpha = 0.05:
    # sqrt(V (V + tau2) / tau2 * (2 ln 20 + ln((V + tau2) / V))).
    variance = 0.05 * 0.95 / 1e4 + 0.03 * 0.97 / 1e4
    half = math.sqrt(variance * (variance + 1e-4) / 1e-4
                     * (2 * math.log(20) + math.log((variance + 1e-4) / variance)))
    (guard,) = decide(ExperimentDesign(guardrails=(Guardrail("rating", 0.2),)),
                      _measurement(10_000, 1000, 10_000, 1300, ratings=(500, 300)),
                      [0.5, 0.5], START, SOON).guardrails
    assert (guard.ci_low, guard.ci_high) == pytest.approx((-0.02 - half, -0.02 + half))
    assert guard.status == "breached"


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


# --- readers are the randomisation unit -------------------------------------------------
# One arm of three readers, (exposures m_i, conversions c_i) = (2, 1), (3, 0), (5, 3):
# M = 10, C = 4, r = 0.4; residuals c_i - r m_i = 0.2, -1.2, 1.0; squares 0.04 + 1.44 + 1.0
# = 2.48; Var(r) = N / (N - 1) * 2.48 / M^2 = 1.5 * 2.48 / 100 = 0.0372. The sums:
# sum m^2 = 4 + 9 + 25 = 38, sum c^2 = 1 + 0 + 9 = 10, sum m*c = 2 + 0 + 15 = 17, and
# 10 - 2 * 0.4 * 17 + 0.16 * 38 = 2.48 again.
THREE_READERS = ((1, 2, 1), (2, 3, 0), (3, 5, 3))  # (reader, exposures, conversions)


def test_delta_method_variance_matches_hand_computation() -> None:
    assert ratio_variance(4, 10, ReaderSums(3, 38, 10, 17)) == pytest.approx(0.0372)
    # Independent impressions would claim 0.4 * 0.6 / 10 = 0.024.
    assert ratio_variance(4, 10) == pytest.approx(0.024)


def test_measure_accumulates_the_per_reader_sums() -> None:
    events = []
    for reader, shown, converted in THREE_READERS:
        for book in range(shown):
            events.append(Ev("impression", reader, book, "control", 10 * book))
            if book < converted:
                events.append(Ev("click", reader, book, "control", 10 * book + 1))
    events.append(Ev("impression", 9, 1, "treatment", 0))
    result = measure(events, "exp", ["control", "treatment"],
                     lambda u: "treatment" if u == 9 else "control", ExperimentDesign(), n_looks=4)
    control = result.arms["control"]
    assert (control.exposures, control.conversions, control.readers) == (10, 4, 3)
    last = result.looks[-1]
    assert (last.n_control, last.x_control) == (10, 4)
    assert last.sums_control == ReaderSums(3, 38, 10, 17)
    assert last.sums_treatment == ReaderSums(1, 1, 0, 0)
    # Earlier looks hold partial per-reader counts: the sums only grow.
    readers = [look.sums_control.readers for look in result.looks if look.sums_control]
    assert readers == sorted(readers) and readers[-1] == 3


def test_one_exposure_per_reader_gives_the_binomial_variance_times_n_over_n_minus_1() -> None:
    # m_i = 1 for all 1,000 readers, 100 of whom converted: sum m^2 = 1000, c^2 = m*c = 100.
    binomial = 0.1 * 0.9 / 1000
    assert ratio_variance(100, 1000) == pytest.approx(binomial)  # no sums: plain binomial
    assert ratio_variance(100, 1000, ReaderSums(1000, 1000, 100, 100)) == pytest.approx(
        binomial * 1000 / 999)
    _, variance, _ = msprt_statistic(100, 1000, 130, 1000, 1e-3, ReaderSums(1000, 1000, 100, 100),
                                     ReaderSums(1000, 1000, 130, 130))
    assert variance == pytest.approx((0.1 * 0.9 + 0.13 * 0.87) / 1000 * 1000 / 999)


def test_a_single_reader_carries_no_information_about_the_spread() -> None:
    assert ratio_variance(3, 10, ReaderSums(1, 100, 9, 30)) == math.inf
    assert msprt_statistic(3, 10, 1, 10, 1e-4, ReaderSums(1, 100, 9, 30),
                           ReaderSums(2, 50, 1, 5))[2] == 0.0


def _clustered_arm(rng: np.random.Generator, readers: int) -> tuple[int, int, ReaderSums]:
    """An arm of readers with Beta(0.1, 0.9) click propensities (mean 0.1, intra-reader
    correlation 0.5), ten impressions each: conversions, exposures and the reader sums."""
    m = np.full(readers, 10)
    c = rng.binomial(m, rng.beta(0.1, 0.9, readers))
    return int(c.sum()), int(m.sum()), ReaderSums(readers, int(m @ m), int(c @ c), int(m @ c))


def test_delta_method_variance_matches_the_spread_of_simulated_rates() -> None:
    rng = np.random.default_rng(5)
    arms = [_clustered_arm(rng, 300) for _ in range(2000)]
    empirical = np.var([c / m for c, m, _ in arms])
    delta = np.mean([ratio_variance(c, m, sums) for c, m, sums in arms])
    binomial = np.mean([ratio_variance(c, m) for c, m, _ in arms])
    assert delta / empirical == pytest.approx(1.0, abs=0.1)
    # The design effect 1 + (10 - 1) * 0.5 = 5.5: binomial sees about a fifth of the spread.
    assert binomial / empirical == pytest.approx(1 / 5.5, abs=0.05)


def _clustered_a_a_promotes(rng: np.random.Generator, clustered: bool) -> bool:
    """One A/A experiment, 400 readers in arrival order, 20 looks: does it promote?"""
    readers, k = 400, 20
    arm = rng.integers(0, 2, readers)
    m = np.full(readers, 10)
    c = rng.binomial(m, rng.beta(0.1, 0.9, readers))
    cuts = np.arange(1, k + 1) * readers // k
    columns = []
    for variant in (0, 1):
        inside = arm == variant
        columns.append([np.cumsum(v * inside)[cuts - 1]
                        for v in (m, c, np.ones(readers, int), m * m, c * c, m * c)])
    looks = []
    for i in range(k):
        (n_c, x_c, *s_c), (n_t, x_t, *s_t) = ([int(v[i]) for v in col] for col in columns)
        looks.append(Look(i, n_c, x_c, n_t, x_t, ReaderSums(*s_c) if clustered else None,
                          ReaderSums(*s_t) if clustered else None))
    for _, effect, p_value, _, _ in sequential_test(looks, 1e-4, 0.05).history:
        if p_value <= 0.05:
            return effect > 0  # the first rejecting look decides: promote or stop
    return False


def test_clustered_a_a_false_promotions_stay_below_alpha_with_the_delta_method() -> None:
    runs, alpha, tolerance = 200, 0.05, 0.03
    delta = sum(_clustered_a_a_promotes(np.random.default_rng([11, i]), True)
                for i in range(runs))
    binomial = sum(_clustered_a_a_promotes(np.random.default_rng([11, i]), False)
                   for i in range(runs))
    assert delta / runs <= alpha + tolerance
    # The same experiments judged as if impressions were independent promote far too often.
    assert binomial / runs > alpha + tolerance


def _arms_and_looks(readers: tuple[int, int], per_reader: int,
                    rates: tuple[float, float]) -> Measurement:
    """Hand-built arms with exposed readers known, each shown ``per_reader`` books."""
    arms = {}
    for variant, n, rate in zip(("control", "treatment"), readers, rates, strict=True):
        exposures = n * per_reader
        arms[variant] = ArmMeasure(variant, exposures, round(exposures * rate),
                                   {"click": round(exposures * rate)}, readers=n)
    c, t = arms["control"], arms["treatment"]
    looks = [Look(i, c.exposures * i // 10, c.conversions * i // 10,
                  t.exposures * i // 10, t.conversions * i // 10) for i in range(1, 11)]
    return Measurement(arms, looks, 0, 0, 1)


def test_sample_ratio_is_checked_on_readers_not_impressions() -> None:
    # A fair 50/50 split of 6,000 readers, 3,050 / 2,950: chi2 = 2 * 50^2 / 3000 = 1.667,
    # p = erfc(sqrt(1.667 / 2)) = 0.197. Their 30,500 / 29,500 impressions give ten times
    # the chi-square (16.67, p = 4.5e-5): a false alarm on impression counts.
    measurement = _arms_and_looks((3050, 2950), 10, (0.10, 0.13))
    assert srm_check([30_500, 29_500], [0.5, 0.5]).mismatch
    decision = decide(ExperimentDesign(), measurement, [0.5, 0.5], START, SOON)
    assert decision.srm.chi2 == pytest.approx(2 * 50**2 / 3000)
    assert decision.srm.p_value == pytest.approx(math.erfc(math.sqrt(2 * 50**2 / 3000 / 2)))
    assert not decision.srm.mismatch
    assert decision.action == "promote"


def test_a_skewed_reader_split_blocks_a_decision_and_says_so() -> None:
    # 3,300 / 2,700 readers: chi2 = 2 * 300^2 / 3000 = 60, far past the threshold.
    decision = decide(ExperimentDesign(), _arms_and_looks((3300, 2700), 10, (0.10, 0.13)),
                      [0.5, 0.5], START, SOON)
    assert decision.srm.chi2 == pytest.approx(60.0)
    assert decision.action == "continue"
    assert "mismatch in readers (3300 / 2700" in decision.reason


def test_kept_looks_keep_a_verdict_from_flipping_back() -> None:
    rng = np.random.default_rng(3)
    first = sequential_test(_looks(rng, 0.1, 0.13, 6000, 12), 1e-4, 0.05)
    assert first.rejected
    # The next evaluation rebuilds its looks at other cut points; alone, a late dip could
    # lift its p-value above alpha again. With the kept looks it cannot.
    weaker = sequential_test(_looks(np.random.default_rng(9), 0.1, 0.1, 3000, 4), 1e-4, 0.05)
    assert not weaker.rejected
    carried = carry_over(weaker, first.history, 0.05)
    assert carried.rejected and carried.p_value == first.p_value
    assert carried.ci_low >= max(first.ci_low, weaker.ci_low) or (
        carried.ci_low, carried.ci_high) == (weaker.ci_low, weaker.ci_high)
    assert len(carried.history) == len({tuple(map(float, row))
                                        for row in (*first.history, *weaker.history)})
