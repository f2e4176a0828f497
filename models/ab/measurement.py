"""Measurement from events: exposures, conversions and per-reader sums per arm and version."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from models.ab.design import EventLike, ExperimentDesign


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
