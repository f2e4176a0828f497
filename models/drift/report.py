"""Thresholds, measures and the report: which measure fired, and why."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.drift.measures import activity_ks, popularity_js, psi, unseen_share
from models.drift.names import (
    BOOK_POPULARITY_JS,
    HIT_RATE_DROP,
    PRECISION,
    RATING_MIX_PSI,
    READER_ACTIVITY_KS,
    STARS,
    UNSEEN_BOOKS,
    UNSEEN_READERS,
    DriftError,
)
from models.drift.performance import SHELF, Performance
from models.drift.statistics import CurrentStats, ReferenceStats
from models.intervals import wilson_interval


@dataclass(frozen=True)
class DriftThresholds:
    """Past these a measure fires (settings.py documents each default)."""

    rating_mix_psi: float = 0.1
    reader_activity_ks: float = 0.1
    book_popularity_js: float = 0.05
    unseen_readers_share: float = 0.05
    unseen_books_share: float = 0.02
    hit_rate_drop: float = 0.15  # fires only when past it with 95% confidence
    min_ratings: int = 500  # fewer new ratings are reported but not judged
    min_interactions: int = 200  # fewer evaluated interactions: the hit rate is not judged

    @classmethod
    def from_settings(cls, s: Any) -> DriftThresholds:  # noqa: ANN401
        """The thresholds a settings object (``settings.Settings``) configures."""
        return cls(
            rating_mix_psi=s.drift_psi_threshold,
            reader_activity_ks=s.drift_ks_threshold,
            book_popularity_js=s.drift_js_threshold,
            unseen_readers_share=s.drift_unseen_readers_threshold,
            unseen_books_share=s.drift_unseen_books_threshold,
            hit_rate_drop=s.drift_hit_rate_drop_threshold,
            min_ratings=s.drift_min_ratings,
            min_interactions=s.drift_min_interactions,
        )


@dataclass(frozen=True)
class Measure:
    """One comparison of reference and current, and whether it crossed its threshold."""

    name: str
    value: float | None  # None when it could not be measured
    threshold: float | None  # None: reported only
    fired: bool
    judged: bool  # False when there was too little data to act on the value
    description: str
    reference: float | None = None
    current: float | None = None

    @property
    def status(self) -> str:
        if self.value is None:
            return "unavailable"
        if self.fired:
            return "drift"
        if self.threshold is None:
            return "reported"
        return "ok" if self.judged else "not judged (too little data)"

    def as_dict(self) -> dict[str, object]:
        return {"measure": self.name, "value": _round(self.value),
                "threshold": self.threshold, "fired": self.fired, "status": self.status,
                "reference": _round(self.reference), "current": _round(self.current),
                "description": self.description}


def _round(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 6)


@dataclass(frozen=True)
class DriftReport:
    """Every measure, its threshold, whether it fired, and the verdict."""

    reference_snapshot: str
    source: str
    n_ratings: int
    n_readers: int
    n_books: int
    measures: tuple[Measure, ...]
    notes: tuple[str, ...] = ()

    @property
    def drifted(self) -> bool:
        return any(m.fired for m in self.measures)

    @property
    def fired(self) -> list[str]:
        return [m.name for m in self.measures if m.fired]

    def measure(self, name: str) -> Measure:
        for m in self.measures:
            if m.name == name:
                return m
        raise KeyError(name)

    def values(self) -> dict[str, float | None]:
        return {m.name: _round(m.value) for m in self.measures}

    def summary(self) -> str:
        """One line: the verdict and the measures that fired, with their thresholds."""
        if not self.drifted:
            return f"no drift in {self.n_ratings} new ratings from {self.source}"
        parts = [f"{m.name} {m.value:.4g} > {m.threshold:g}" for m in self.measures if m.fired]
        return f"drift in {self.n_ratings} new ratings from {self.source}: " + "; ".join(parts)

    def as_dict(self) -> dict[str, object]:
        """JSON-safe: the verdict, every measure and the notes."""
        return {
            "drifted": self.drifted,
            "fired": self.fired,
            "summary": self.summary(),
            "reference_snapshot": self.reference_snapshot,
            "source": self.source,
            "n_ratings": self.n_ratings,
            "n_readers": self.n_readers,
            "n_books": self.n_books,
            "measures": [m.as_dict() for m in self.measures],
            "notes": list(self.notes),
        }

    def table(self) -> list[dict[str, object]]:
        """One row per measure (for a table artifact)."""
        return [{k: v for k, v in m.as_dict().items() if k != "description"}
                for m in self.measures]

    def to_markdown(self, plot_path: str | None = None) -> str:
        """The report as markdown: verdict, measures with thresholds, notes, plot."""
        verdict = "**Drift detected**" if self.drifted else "No drift"
        lines = [
            "### Drift report", "",
            f"{verdict}: {self.summary()}.", "",
            f"Reference snapshot `{self.reference_snapshot}`; current data `{self.source}`: "
            f"{self.n_ratings} new ratings by {self.n_readers} readers on {self.n_books} books.",
            "",
            "| measure | value | threshold | status | reference | current | what it compares |",
            "|---|---|---|---|---|---|---|",
        ]
        for m in self.measures:
            lines.append(
                f"| {m.name} | {_fmt(m.value)} | {_fmt(m.threshold)} | {m.status} | "
                f"{_fmt(m.reference)} | {_fmt(m.current)} | {m.description} |"
            )
        if self.notes:
            lines += ["", *[f"- {note}" for note in self.notes]]
        if plot_path:
            lines += ["", f"Reference and current distributions: `{plot_path}`", "",
                      f"![reference vs current]({Path(plot_path).as_uri()})"]
        return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def detect_drift(
    reference: ReferenceStats,
    current: CurrentStats,
    performance: Performance | None = None,
    thresholds: DriftThresholds | None = None,
) -> DriftReport:
    """Compare new ratings (and the served lists' performance on them) with the reference."""
    t = thresholds or DriftThresholds()
    n = current.n_ratings
    judged = n >= t.min_ratings
    notes: list[str] = []
    if not judged:
        notes.append(f"only {n} new ratings (< {t.min_ratings}): data measures are reported "
                     "but not judged")

    def data_measure(name: str, value: float | None, threshold: float, description: str,
                     ref: float | None = None, cur: float | None = None) -> Measure:
        fired = judged and value is not None and value > threshold
        return Measure(name, value, threshold, fired, judged, description, ref, cur)

    has_data = n > 0
    ref_mean = float(reference.rating_counts @ STARS / max(reference.n_ratings, 1))
    cur_mean = float(current.rating_counts @ STARS / n) if has_data else None
    measures = [
        data_measure(RATING_MIX_PSI,
                     psi(reference.rating_counts, current.rating_counts) if has_data else None,
                     t.rating_mix_psi, "PSI of the 1-5 star shares (reference/current: mean "
                     "rating)", ref_mean, cur_mean),
        data_measure(READER_ACTIVITY_KS,
                     activity_ks(reference.reader_counts, current.reader_counts)
                     if has_data else None, t.reader_activity_ks,
                     "KS distance of new ratings per reader from proportional activity "
                     "(reference/current: mean per active reader)",
                     _expected_mean_activity(reference, n) if has_data else None,
                     float(current.reader_counts.mean()) if has_data else None),
        data_measure(BOOK_POPULARITY_JS, popularity_js(reference, current) if has_data else None,
                     t.book_popularity_js, "Jensen-Shannon divergence (bits) of ratings over "
                     "books pooled by reference popularity"),
        data_measure(UNSEEN_READERS,
                     unseen_share(reference.user_ids, current.user_ids, current.reader_counts)
                     if has_data else None, t.unseen_readers_share,
                     "share of new ratings by readers the model does not know"),
        data_measure(UNSEEN_BOOKS,
                     unseen_share(reference.book_ids, current.book_ids, current.book_counts)
                     if has_data else None, t.unseen_books_share,
                     "share of new ratings on books the model does not know"),
    ]
    measures += _performance_measures(reference.performance, performance, t, notes)
    if n == 0:
        notes.append("no new ratings: nothing to compare")
    return DriftReport(
        reference_snapshot=reference.snapshot_id,
        source=current.source,
        n_ratings=n,
        n_readers=len(current.user_ids),
        n_books=len(current.book_ids),
        measures=tuple(measures),
        notes=tuple(notes),
    )


def _expected_mean_activity(reference: ReferenceStats, n_new: int) -> float:
    """Mean new ratings per active reader under proportional activity."""
    p = reference.reader_counts / float(reference.reader_counts.sum())
    active = float(np.sum(1.0 - (1.0 - p) ** n_new))
    return n_new / max(active, 1e-300)


def _performance_measures(
    reference: Performance | None, current: Performance | None, t: DriftThresholds,
    notes: list[str],
) -> list[Measure]:
    """The hit-rate drop (judged) and precision at k (reported beside its reference)."""
    k = (current or reference).k if (current or reference) else None
    precision = Measure(
        PRECISION if k is None else f"precision_at_{k}",
        None if current is None else current.precision, None, False, False,
        "served lists' precision on new interactions (reference: at training time); it "
        "grows with how many new interactions a reader has, so it is reported, not judged",
        None if reference is None else reference.precision,
        None if current is None else current.precision,
    )
    if reference is None or current is None:
        notes.append("hit rate not compared: " + (
            "the reference has no training-time performance" if reference is None
            else "no new interaction belongs to a reader with a served list"))
        drop = Measure(HIT_RATE_DROP, None, t.hit_rate_drop, False, False,
                       "relative fall of the served lists' hit rate from training time",
                       None if reference is None else reference.hit_rate,
                       None if current is None else current.hit_rate)
        return [drop, precision]
    if current.k != reference.k:
        raise DriftError(f"hit rates at different k cannot be compared: {current.k} (served) "
                         f"vs {reference.k} (reference)")
    judged = current.interactions >= t.min_interactions
    if not judged:
        notes.append(f"only {current.interactions} new interactions of readers with a served "
                     f"list (< {t.min_interactions}): the hit rate is not judged")
    if reference.basis != SHELF:
        judged = False
        notes.append("the snapshot has no to-read shelves, so the training-time hit rate is "
                     "the test split's, which held-out ratings make optimistic: reported, "
                     "not judged")
    value = 1.0 - current.hit_rate / reference.hit_rate if reference.hit_rate > 0 else None
    if judged and value is not None and value > t.hit_rate_drop:
        # Fire only when the drop is past the threshold with 95% confidence: a few hundred
        # interactions hold a few dozen hits, whose chance swings alone exceed 15%.
        # The upper end of the 90% interval: the one-sided 95% bound.
        upper = wilson_interval(round(current.hit_rate * current.interactions),
                                current.interactions, level=0.90)[1]
        if 1.0 - upper / reference.hit_rate <= t.hit_rate_drop:
            judged = False
            notes.append(f"hit_rate_drop {value:.3g} is past {t.hit_rate_drop:g} but not with "
                         f"95% confidence on {current.interactions} new interactions")
    fired = judged and value is not None and value > t.hit_rate_drop
    basis = "to-read shelves" if reference.basis == SHELF else "the test split"
    drop = Measure(HIT_RATE_DROP, value, t.hit_rate_drop, fired, judged,
                   f"relative fall of the served lists' hit rate at {current.k} (share of new "
                   f"interactions in the reader's list) from training time (on {basis})",
                   reference.hit_rate, current.hit_rate)
    return [drop, precision]
