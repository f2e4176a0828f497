"""The decision: guardrails, promote, stop or continue."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from models.ab.design import Action, ExperimentDesign, Guardrail
from models.ab.measurement import ArmMeasure, Measurement
from models.ab.statistics import (
    SequentialResult,
    SrmResult,
    always_valid_half_width,
    carry_over,
    ratio_variance,
    sequential_test,
    srm_check,
)


@dataclass(frozen=True)
class GuardrailResult:
    """One guardrail's rates, the always-valid interval of their difference, and its verdict.

    ``bound`` is the largest drop allowed (-max_relative_drop x the control's rate).
    ``breached``: the whole interval lies below it (vetoes promotion); ``within``: the whole
    interval lies above it; ``undecided``: not yet known either way (promotion waits).
    """

    event_type: str
    control_rate: float
    treatment_rate: float
    relative_change: float
    ci_low: float
    ci_high: float
    bound: float
    status: Literal["within", "breached", "undecided"]

    @property
    def vetoed(self) -> bool:
        return self.status == "breached"


@dataclass(frozen=True)
class Decision:
    """What to do with the experiment now, and why."""

    action: Action
    reason: str
    srm: SrmResult
    test: SequentialResult
    guardrails: tuple[GuardrailResult, ...]


def check_guardrails(
    control: ArmMeasure, treatment: ArmMeasure, guardrails: Sequence[Guardrail],
    tau2: float = 1e-4, alpha: float = 0.05,
) -> tuple[GuardrailResult, ...]:
    """Each guardrail judged on the always-valid interval of the difference of its rates.

    A point estimate would veto on noise and let a real harm through alike: the interval
    (the mSPRT's, valid at any look like the primary test's) must lie wholly below the
    allowed drop to veto, and wholly above it to clear the way for a promotion.
    """
    results = []
    for guard in guardrails:
        event = guard.event_type
        rate_c, rate_t = control.type_rate(event), treatment.type_rate(event)
        change = (rate_t - rate_c) / rate_c if rate_c > 0 else 0.0
        variance = (ratio_variance(control.by_type.get(event, 0), control.exposures,
                                   control.type_sums.get(event))
                    + ratio_variance(treatment.by_type.get(event, 0), treatment.exposures,
                                     treatment.type_sums.get(event)))
        half = always_valid_half_width(variance, tau2, alpha) if variance > 0 else math.inf
        low, high = rate_t - rate_c - half, rate_t - rate_c + half
        bound = -guard.max_relative_drop * rate_c
        status: Literal["within", "breached", "undecided"] = (
            "breached" if high < bound else "within" if low > bound else "undecided")
        results.append(GuardrailResult(event, rate_c, rate_t, change, low, high, bound,
                                       status))
    return tuple(results)


def srm_counts(control: ArmMeasure, treatment: ArmMeasure) -> tuple[str, list[int]]:
    """What the sample-ratio check counts: readers per arm, or exposures if those are unknown."""
    if control.readers is None or treatment.readers is None:
        return "exposures", [control.exposures, treatment.exposures]
    return "readers", [control.readers, treatment.readers]


def decide(
    design: ExperimentDesign,
    measurement: Measurement,
    shares: Sequence[float],
    started_at: str,
    now: datetime | None = None,
    kept_looks: Sequence[Sequence[float]] = (),
) -> Decision:
    """Promote, stop or continue; ``shares`` are the planned (control, treatment) shares.

    Order: a sample-ratio mismatch blocks any decision from the data (stop only at the
    maximum duration); below the minimum sample per arm nothing is judged; a significant
    gain promotes once every guardrail is shown within its bound (a breached one stops it, an
    undecided one makes it wait); a significant loss or a breached guardrail stops; past the
    maximum duration the champion is kept (stop).

    The sample-ratio check counts readers, the unit the assignment randomises: impressions
    come ~10 to a visit, so their counts vary far more than a chi-square on independent
    draws expects. Only when an arm's readers are unknown does it count exposures.

    ``kept_looks`` are the looks earlier evaluations of this experiment took (``carry_over``):
    a verdict, once reached, cannot flip back.
    """
    control = measurement.arms[design.control]
    treatment = measurement.arms[design.treatment]
    unit, counts = srm_counts(control, treatment)
    srm = srm_check(counts, shares, design.srm_threshold)
    test = carry_over(sequential_test(measurement.looks, design.mixture_variance, design.alpha),
                      kept_looks, design.alpha)
    guards = check_guardrails(control, treatment, design.guardrails,
                              design.mixture_variance, design.alpha)
    moment = now or datetime.now(UTC)
    expired = (moment - datetime.fromisoformat(started_at)).total_seconds() >= (
        design.max_duration_s
    )

    def result(action: Action, reason: str) -> Decision:
        return Decision(action, reason, srm, test, guards)

    if srm.mismatch:
        if expired:
            return result("stop", f"maximum duration reached with a sample ratio mismatch "
                                  f"(p={srm.p_value:.2g}); champion kept")
        return result("continue", f"sample ratio mismatch in {unit} ({counts[0]} / "
                                  f"{counts[1]}; chi2={srm.chi2:.1f}, p={srm.p_value:.2g}): "
                                  f"decisions blocked")
    if min(control.exposures, treatment.exposures) < design.min_sample:
        if expired:
            return result("stop", "maximum duration reached before the minimum sample; "
                                  "champion kept")
        return result("continue", f"minimum sample not reached ({control.exposures} / "
                                  f"{treatment.exposures} < {design.min_sample} per arm)")
    vetoes = [g.event_type for g in guards if g.vetoed]
    unsure = [g.event_type for g in guards if g.status == "undecided"]
    if test.rejected and test.effect > 0:
        if vetoes:
            return result("stop", f"treatment wins on the primary metric but guardrails "
                                  f"{vetoes} veto it")
        if unsure:
            if expired:
                return result("stop", f"treatment wins on the primary metric but guardrails "
                                      f"{unsure} were not shown within their bounds by the "
                                      "maximum duration; champion kept")
            return result("continue", f"treatment wins on the primary metric; waiting until "
                                      f"guardrails {unsure} are shown within their bounds")
        return result("promote", f"treatment better: effect {test.effect:+.4f}, "
                                 f"always-valid p={test.p_value:.3g}")
    if test.rejected:
        return result("stop", f"treatment worse: effect {test.effect:+.4f}, "
                              f"always-valid p={test.p_value:.3g}")
    if vetoes:
        return result("stop", f"guardrails {vetoes} breached")
    if expired:
        return result("stop", "maximum duration reached without a significant difference; "
                              "champion kept")
    return result("continue", f"no decision yet (always-valid p={test.p_value:.3g})")
