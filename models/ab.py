"""A/B evaluation: the experiment design, measurement from events, and the sequential test.

Plain Python (numpy/scipy only, no Prefect): the evaluation flow, the benchmarks and the
tests call the same functions.

The assignment of readers to variants is ``serving.experiments`` (a hash of salt and user
id), stored under ``{p}experiment:{name}``. What only the evaluation needs (minimum sample,
maximum duration, primary metric, guardrails, alpha, attribution window) is an
``ExperimentDesign`` stored as JSON beside it under ``{p}experiment:{name}:design`` (names
cannot contain ':', so the two keys never collide)::

    {"alpha": 0.05, "attribution_window_s": 3600.0, "control": "control",
     "guardrails": [{"event_type": "rating", "max_relative_drop": 0.2}],
     "max_duration_s": 1209600.0, "min_sample": 1000, "mixture_variance": 0.0001,
     "primary_metric": ["click", "add_to_shelf", "rating"], "srm_threshold": 0.001,
     "treatment": "treatment"}

Measurement: an exposure is the first impression of a (reader, book) pair in a variant; it
converts on a primary event for the same reader and book in the same variant within the
attribution window after the impression. The conversion rate per exposure is the primary
metric; each guardrail is the same rate for one interaction type.

Readers, not impressions, are randomised: a visit shows about ten books to one reader, and a
reader who clicks readily does so across the visit. So the sample-ratio check counts distinct
exposed readers per arm, and the variance of an arm's rate r = C / M (C conversions over M
exposures, from N readers with m_i exposures and c_i conversions each) is the delta-method
(cluster-robust) one for a ratio of sums:

    Var(r) = N / (N - 1) * sum_i (c_i - r m_i)^2 / M^2

With one exposure per reader it is the binomial r(1-r)/M times N/(N-1); treating clustered
impressions as independent would understate it by about the design effect
1 + (m - 1) * ICC and inflate both the SRM alarms and the mSPRT's false positives.

The sequential test is the normal-mixture mSPRT of Johari, Koomen, Pekelis and Walsh
("Always valid inference", 2017/2022) for the difference of two rates
theta = p_treatment - p_control. With the plug-in variance V = Var(r_c) + Var(r_t) (the
binomial p_c(1-p_c)/n_c + p_t(1-p_t)/n_t when no per-reader sums are known) and mixture
variance tau^2 its likelihood ratio is

    Lambda = sqrt(V / (V + tau^2)) * exp(theta_hat^2 * tau^2 / (2 V (V + tau^2)))

The always-valid p-value is the running minimum of min(1, 1/Lambda) over the looks, and the
always-valid interval is the running intersection of
theta_hat +- sqrt(V (V + tau^2) / tau^2 * (2 log(1/alpha) + log((V + tau^2) / V))),
so looking after every batch of events does not inflate the false-positive rate.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from scipy import stats

from models.schema import INTERACTION_TYPES

__all__ = [
    "ArmMeasure",
    "Decision",
    "ExperimentDesign",
    "Guardrail",
    "GuardrailResult",
    "InvalidDesignError",
    "Look",
    "Measurement",
    "ReaderSums",
    "SequentialResult",
    "SrmResult",
    "decide",
    "design_key",
    "measure",
    "msprt_statistic",
    "ratio_variance",
    "sequential_test",
    "srm_check",
    "srm_counts",
]

Action = Literal["promote", "stop", "continue"]


class InvalidDesignError(ValueError):
    """An experiment design that cannot be evaluated; the message says which field."""


class EventLike(Protocol):
    """What the measurement reads of an event (serving.events.StoredEvent has it)."""

    type: str
    user_id: int
    book_id: int
    variant: str
    version: str
    ts_ms: int
    experiment: str | None


@dataclass(frozen=True)
class Guardrail:
    """A rate of one interaction type the treatment may not drop by more than a share."""

    event_type: str
    max_relative_drop: float

    def __post_init__(self) -> None:
        if self.event_type not in INTERACTION_TYPES:
            raise InvalidDesignError(
                f"guardrail event_type must be one of {INTERACTION_TYPES}, got "
                f"{self.event_type!r}"
            )
        if not 0 < self.max_relative_drop <= 1:
            raise InvalidDesignError(
                f"guardrail max_relative_drop must be in (0, 1], got {self.max_relative_drop}"
            )


@dataclass(frozen=True)
class ExperimentDesign:
    """How an experiment is judged: sample, duration, metric, guardrails and error rate."""

    control: str = "control"
    treatment: str = "treatment"
    min_sample: int = 1000
    max_duration_s: float = 14 * 86400.0
    primary_metric: tuple[str, ...] = INTERACTION_TYPES
    guardrails: tuple[Guardrail, ...] = ()
    alpha: float = 0.05
    # Prior variance of the effect under the alternative; ~(expected effect)^2 tunes power.
    mixture_variance: float = 1e-4
    attribution_window_s: float = 3600.0
    srm_threshold: float = 0.001

    def __post_init__(self) -> None:
        if self.control == self.treatment:
            raise InvalidDesignError("control and treatment must be different variants")
        if self.min_sample < 1:
            raise InvalidDesignError(f"min_sample must be >= 1, got {self.min_sample}")
        if self.max_duration_s <= 0 or self.attribution_window_s <= 0:
            raise InvalidDesignError("max_duration_s and attribution_window_s must be > 0")
        if not self.primary_metric or set(self.primary_metric) - set(INTERACTION_TYPES):
            raise InvalidDesignError(
                f"primary_metric must be a non-empty subset of {INTERACTION_TYPES}, got "
                f"{self.primary_metric!r}"
            )
        if not 0 < self.alpha < 1 or not 0 < self.srm_threshold < 1:
            raise InvalidDesignError("alpha and srm_threshold must be in (0, 1)")
        if self.mixture_variance <= 0:
            raise InvalidDesignError("mixture_variance must be > 0")

    def to_json(self) -> str:
        """The JSON stored under ``{p}experiment:{name}:design``."""
        raw = asdict(self)
        raw["primary_metric"] = list(self.primary_metric)
        raw["guardrails"] = [asdict(g) for g in self.guardrails]
        return json.dumps(raw, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ExperimentDesign:
        """Build a design from a mapping (stored JSON or a flow parameter)."""
        if not isinstance(raw, Mapping):
            raise InvalidDesignError(f"a design must be a JSON object, got {raw!r:.80}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(raw) - known)
        if unknown:
            raise InvalidDesignError(f"unknown design fields {unknown}; known: {sorted(known)}")
        values = dict(raw)
        if "primary_metric" in values:
            metric = values["primary_metric"]
            values["primary_metric"] = (metric,) if isinstance(metric, str) else tuple(metric)
        if "guardrails" in values:
            try:
                values["guardrails"] = tuple(
                    g if isinstance(g, Guardrail) else Guardrail(**g) for g in values["guardrails"]
                )
            except TypeError as exc:
                raise InvalidDesignError(f"malformed guardrail: {exc}") from None
        return cls(**values)

    @classmethod
    def from_json(cls, text: str | bytes) -> ExperimentDesign:
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise InvalidDesignError(f"design is not valid JSON: {exc}") from None


def design_key(prefix: str, name: str) -> str:
    """Where an experiment's design is stored, beside ``{prefix}experiment:{name}``."""
    return f"{prefix}experiment:{name}:design"


# --- measurement ------------------------------------------------------------------------
@dataclass
class ArmMeasure:
    """Exposures, conversions and exposed readers of one variant (and per published version).

    ``readers`` counts distinct readers with at least one exposure, the unit the assignment
    randomises; None when unknown (a hand-built measure), and then the sample-ratio check
    falls back to exposures.
    """

    variant: str
    exposures: int = 0
    conversions: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    versions: dict[str, list[int]] = field(default_factory=dict)  # version -> [exp, conv]
    readers: int | None = None
    # Per-reader sums of each interaction type's rate (for the guardrails' intervals).
    type_sums: dict[str, ReaderSums] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.conversions / self.exposures if self.exposures else 0.0

    def type_rate(self, event_type: str) -> float:
        return self.by_type.get(event_type, 0) / self.exposures if self.exposures else 0.0


@dataclass(frozen=True)
class ReaderSums:
    """Per-reader sums of one arm, for the cluster-robust variance of its rate.

    Reader i has m_i exposures and c_i conversions; the arm's exposures and conversions are
    sum m_i and sum c_i, so these four complete what ``ratio_variance`` needs.
    """

    readers: int
    sum_m2: int  # sum of m_i^2
    sum_c2: int  # sum of c_i^2
    sum_mc: int  # sum of m_i * c_i


@dataclass(frozen=True)
class Look:
    """Cumulative counts of both arms at one point in time (a 'look' at the data).

    Without per-reader sums (None) each exposure counts as its own reader: the variance is
    binomial, right only when every reader saw one book.
    """

    ts_ms: int
    n_control: int
    x_control: int
    n_treatment: int
    x_treatment: int
    sums_control: ReaderSums | None = None
    sums_treatment: ReaderSums | None = None


@dataclass
class Measurement:
    """What the event stream says about one experiment."""

    arms: dict[str, ArmMeasure]
    looks: list[Look]
    misassigned: int  # exposures whose variant differs from the recomputed assignment
    first_ts_ms: int | None
    last_ts_ms: int | None
    other_versions: int = 0  # exposures served by a version the experiment did not pin


def measure(
    events: Iterable[EventLike],
    experiment: str,
    variants: Sequence[str],
    assign: Callable[[int], str],
    design: ExperimentDesign,
    n_looks: int = 20,
    since_ms: int | None = None,
    versions: Mapping[str, str] | None = None,
) -> Measurement:
    """Exposures and attributed conversions per variant, and cumulative looks over time.

    Events before ``since_ms`` (the experiment's start) are ignored: a restarted experiment
    of the same name begins afresh. ``assign(user_id) -> variant name`` is the serving
    assignment: exposures logged under another variant are counted as misassigned and left
    out (serving falls back to the control when an arm has nothing published; counting
    those would bias the control). With ``versions`` (variant -> the published version the
    experiment pinned) only exposures served by that version count: the arms are what was
    tested, not whatever the aliases served meanwhile.
    """
    window_ms = int(design.attribution_window_s * 1000)
    primary = set(design.primary_metric)
    arms = {name: ArmMeasure(name, readers=0) for name in variants}
    # (user, book, variant) -> [impression ts, version, converted types]
    exposed: dict[tuple[int, int, str], tuple[int, str, set[str]]] = {}
    readers: set[tuple[int, str]] = set()
    misassigned = other_versions = 0
    ordered = sorted(
        (e for e in events if e.experiment == experiment and e.variant in arms
         and (since_ms is None or e.ts_ms >= since_ms)),
        key=lambda e: e.ts_ms,
    )
    for event in ordered:
        key = (event.user_id, event.book_id, event.variant)
        if event.type == "impression":
            if key in exposed:
                continue
            if assign(event.user_id) != event.variant:
                misassigned += 1
                continue
            if versions is not None and versions.get(event.variant, event.version) != (
                    event.version):
                other_versions += 1
                continue
            exposed[key] = (event.ts_ms, event.version, set())
            arm = arms[event.variant]
            arm.exposures += 1
            if (event.user_id, event.variant) not in readers:
                readers.add((event.user_id, event.variant))
                arm.readers = (arm.readers or 0) + 1
            arm.versions.setdefault(event.version, [0, 0])[0] += 1
            continue
        seen = exposed.get(key)
        if seen is None or not 0 <= event.ts_ms - seen[0] <= window_ms:
            continue  # not attributable: no exposure of this book in this arm, or too late
        _, version, types = seen
        if event.type in types:
            continue
        arm = arms[event.variant]
        if not types & primary and event.type in primary:
            arm.conversions += 1
            arm.versions.setdefault(version, [0, 0])[1] += 1
        types.add(event.type)
        arm.by_type[event.type] = arm.by_type.get(event.type, 0) + 1
    looks = _looks(exposed, primary, design.control, design.treatment, n_looks)
    for name, arm in arms.items():
        arm.type_sums = _type_sums(exposed, name, {g.event_type for g in design.guardrails})
    first = ordered[0].ts_ms if ordered else None
    last = ordered[-1].ts_ms if ordered else None
    return Measurement(arms, looks, misassigned, first, last, other_versions)


def _type_sums(
    exposed: Mapping[tuple[int, int, str], tuple[int, str, set[str]]],
    variant: str,
    types: set[str],
) -> dict[str, ReaderSums]:
    """Per-reader sums of one arm for the rate of each interaction type in ``types``."""
    per_reader: dict[int, list[int]] = {}
    order = sorted(types)
    for (user, _, arm), (_, _, seen) in exposed.items():
        if arm != variant:
            continue
        counts = per_reader.setdefault(user, [0] * (1 + len(order)))
        counts[0] += 1
        for i, event_type in enumerate(order, 1):
            counts[i] += event_type in seen
    return {
        event_type: ReaderSums(
            len(per_reader),
            sum(c[0] * c[0] for c in per_reader.values()),
            sum(c[i] * c[i] for c in per_reader.values()),
            sum(c[0] * c[i] for c in per_reader.values()),
        )
        for i, event_type in enumerate(order, 1)
    }


def _looks(
    exposed: Mapping[tuple[int, int, str], tuple[int, str, set[str]]],
    primary: set[str],
    control: str,
    treatment: str,
    n_looks: int,
) -> list[Look]:
    """Cumulative counts at evenly spaced times; a conversion counts at its exposure time.

    Each look also carries the arms' per-reader sums, updated one exposure at a time: adding
    an exposure (converted or not) to a reader with m, c so far changes m^2, c^2 and m*c by
    the difference of the new and old products.
    """
    rows = sorted(
        (ts, variant, user, bool(types & primary))
        for (user, _, variant), (ts, _, types) in exposed.items()
    )
    if not rows:
        return []
    start, end = rows[0][0], rows[-1][0]
    cuts = [start + (end - start) * (i + 1) // n_looks for i in range(n_looks)]
    # per arm: [exposures, conversions, readers, sum m^2, sum c^2, sum m*c]
    totals = {control: [0] * 6, treatment: [0] * 6}
    per_reader: dict[str, dict[int, tuple[int, int]]] = {control: {}, treatment: {}}
    looks, index = [], 0
    for cut in cuts:
        while index < len(rows) and rows[index][0] <= cut:
            _, variant, user, converted = rows[index]
            index += 1
            if variant not in totals:
                continue
            t = totals[variant]
            m, c = per_reader[variant].get(user, (0, 0))
            m1, c1 = m + 1, c + int(converted)
            per_reader[variant][user] = (m1, c1)
            t[0] += 1
            t[1] += c1 - c
            t[2] += m == 0
            t[3] += m1 * m1 - m * m
            t[4] += c1 * c1 - c * c
            t[5] += m1 * c1 - m * c
        tc, tt = totals[control], totals[treatment]
        looks.append(Look(cut, tc[0], tc[1], tt[0], tt[1],
                          ReaderSums(*tc[2:]), ReaderSums(*tt[2:])))
    return looks


# --- statistics ---------------------------------------------------------------------------
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


# --- decision ---------------------------------------------------------------------------
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
