"""Replay: the measure of a nightly batch recommender (rolling origin on global time).

At cut-offs t₁ < … < tₙ, a period apart and ending at the log's end: fit on every
interaction before tᵢ, publish a top-k for each reader active in [tᵢ, tᵢ₊₁) who was
already known before tᵢ (a returning reader), and score the list on what that reader does
in the period that they had not done before. Unlike the per-reader split, no later
interaction of anybody is in the fit: "what is read now" cannot leak in.

Rankers are fitted once per cut-off and may keep what they learnt (a model fitted at the
first cut-off and never again). A period before t₁ serves as the validation period of the
first cut-off: rankers that choose something (the weight of the recency prior) choose it
there, and at each later cut-off on the period just before it — never on the period they
are scored on.

Figures: per period and pooled over reader-periods (each returning reader of a period
counts once), the mean with a 95% interval, and ratios against a baseline with a paired
bootstrap interval.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol

import numpy as np
import pandas as pd
import scipy.sparse as sp

from models.interactions import IdMap, sorted_distinct, to_matrix
from models.metrics import hit_matrix
from models.schema import BOOK_ID, TIMESTAMP, USER_ID, GoodbooksError

K = 10
UNITS = {"s": 1, "m": 60, "h": 3_600, "d": 86_400, "w": 7 * 86_400}
BOOTSTRAP = 2_000


class ReplayError(GoodbooksError):
    """A replay cannot run as asked (no time to cut, too many periods, nobody returning)."""


def parse_span(text: str, timed: bool) -> int:
    """'7d', '12h', '2w', '90m', '30s' (timed logs) or '50000rows' (any log) → units of time."""
    found = re.fullmatch(r"\s*(\d+)\s*(s|m|h|d|w|rows?)\s*", str(text))
    if not found:
        raise ReplayError(f"cannot read the span {text!r}: give a number and a unit, e.g. 7d, "
                          "12h, 2w or 50000rows")
    value, unit = int(found.group(1)), found.group(2)
    if value <= 0:
        raise ReplayError(f"the span {text!r} must be positive")
    if unit.startswith("row"):
        if timed:
            raise ReplayError(f"the log has timestamps: give {text!r} in time (7d, 12h, ...)")
        return value
    if not timed:
        raise ReplayError(f"the log has no timestamps (row order is its time): give the span "
                          f"in rows, e.g. 50000rows, not {text!r}")
    return value * UNITS[unit]


@dataclass(frozen=True)
class Log:
    """Interactions in time order: reader, book and time (seconds, or the row number)."""

    users: np.ndarray
    books: np.ndarray
    times: np.ndarray
    timed: bool
    catalogue: np.ndarray  # every book id that may be recommended (those seen included)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, catalogue: np.ndarray | None = None) -> Log:
        """From user_id, book_id and an optional timestamp column (else row order is time)."""
        timed = TIMESTAMP in frame.columns
        if timed:
            stamps = pd.to_numeric(frame[TIMESTAMP], errors="coerce")
            if stamps.isna().any():
                raise ReplayError(f"{int(stamps.isna().sum())} interaction(s) have no usable "
                                  "timestamp; validate the data first (ingest does)")
            order = np.argsort(stamps.to_numpy(), kind="stable")
            frame = frame.iloc[order]
            times = stamps.to_numpy(dtype=np.int64)[order]
        else:
            times = np.arange(len(frame), dtype=np.int64)
        users = frame[USER_ID].to_numpy(dtype=np.int64)
        books = frame[BOOK_ID].to_numpy(dtype=np.int64)
        known = sorted_distinct(books if catalogue is None else np.concatenate(
            [np.asarray(catalogue, dtype=np.int64), books]))
        return cls(users=users, books=books, times=times, timed=timed, catalogue=known)

    def __len__(self) -> int:
        return len(self.users)


@dataclass(frozen=True)
class History:
    """Everything before a cut-off, indexed for fitting: what a ranker may learn from."""

    cutoff: int
    ids: IdMap  # readers with an interaction before the cut-off; the whole catalogue
    rows: np.ndarray  # reader index of each interaction, in time order
    cols: np.ndarray  # book index of each interaction
    times: np.ndarray

    @cached_property
    def seen(self) -> sp.csr_matrix:
        """What each reader had read before the cut-off, built once: every setting of a
        choice excludes it again."""
        return to_matrix(self.rows, self.cols, (self.ids.n_users, self.ids.n_books))

    def frame(self) -> pd.DataFrame:
        """user_id, book_id, timestamp in time order (what the project's splits and fits
        read); an untimed log's times are row positions."""
        return pd.DataFrame({USER_ID: self.ids.user_ids[self.rows],
                             BOOK_ID: self.ids.book_ids[self.cols], TIMESTAMP: self.times})


@dataclass(frozen=True)
class Period:
    """One cut-off, its history and what its returning readers did next."""

    index: int  # 0: the validation period before the first scored cut-off
    start: int
    end: int
    history: History
    readers: np.ndarray  # reader indices (in history.ids) active in the period, returning
    relevant: sp.csr_matrix  # [len(readers), n_books]: new to them in the period

    @property
    def scored(self) -> bool:
        return self.index > 0


def periods(log: Log, period: int, count: int, end: int | None = None, min_history: int = 1
            ) -> list[Period]:
    """The validation period and ``count`` scored periods, the last ending at ``end``.

    ``end`` defaults to just after the log's last interaction.

    Raises ReplayError when the log does not span count + 1 periods with history before
    the first, or when no scored period has a returning reader.
    """
    if count < 1:
        raise ReplayError(f"ask for at least one period, not {count}")
    if len(log) == 0:
        raise ReplayError("the log is empty: there is nothing to replay")
    end = int(log.times.max()) + 1 if end is None else int(end)
    first = end - (count + 1) * period
    if int(log.times.min()) >= first:
        span = end - int(log.times.min())
        most = max(0, span // period - 1)
        unit = "rows" if not log.timed else "s"
        raise ReplayError(
            f"asked for {count} period(s) of {period:,} {unit} after a validation period, "
            f"but the log spans {span:,} {unit}: at most {most} leave history before the "
            f"validation period; ask for fewer or shorter periods")
    result = []
    for index in range(count + 1):
        start = first + index * period
        stop = start + period
        before = log.times < start
        if int(before.sum()) < min_history:
            raise ReplayError(f"only {int(before.sum())} interaction(s) before the cut-off "
                              f"{start}: too little history to fit on")
        result.append(_period(log, index, start, stop, before))
    if not any(len(p.readers) for p in result if p.scored):
        raise ReplayError("no scored period has a returning reader (a reader active in the "
                          "period who was known before it); choose longer periods")
    return result


def _period(log: Log, index: int, start: int, stop: int, before: np.ndarray) -> Period:
    users = sorted_distinct(log.users[before])
    ids = IdMap(user_ids=users, book_ids=log.catalogue)
    rows, cols = ids.user_index(log.users[before]), ids.book_index(log.books[before])
    history = History(cutoff=start, ids=ids, rows=rows, cols=cols, times=log.times[before])
    during = (log.times >= start) & (log.times < stop)
    returning = during & np.isin(log.users, users)
    next_rows = ids.user_index(log.users[returning])
    next_cols = ids.book_index(log.books[returning])
    shape = (ids.n_users, ids.n_books)
    relevant = to_matrix(next_rows, next_cols, shape)
    relevant = relevant - relevant.multiply(history.seen)  # only what is new to them
    relevant.eliminate_zeros()
    readers = np.flatnonzero(np.diff(relevant.indptr) > 0)
    return Period(index=index, start=start, end=stop, history=history, readers=readers,
                  relevant=relevant[readers])


# --- rankers ------------------------------------------------------------------------------


class Ranker(Protocol):
    """Fitted at each cut-off; ranks the catalogue for some readers of its history."""

    name: str

    def fit(self, history: History) -> None: ...

    def top_k(self, history: History, readers: np.ndarray, k: int) -> np.ndarray: ...


class Choosing(Protocol):
    """A ranker that picks a setting on a validation period before it is scored."""

    def choose(self, period: Period, score: Callable[[np.ndarray], np.ndarray]) -> None: ...


def exclusion(history: History, readers: np.ndarray) -> sp.csr_matrix:
    """What each reader has already read (never recommended again)."""
    return history.seen[readers]


# --- scoring ------------------------------------------------------------------------------


def reader_scores(top: np.ndarray, relevant: sp.csr_matrix, k: int = K
                  ) -> tuple[np.ndarray, np.ndarray]:
    """NDCG@k and hit@k of each reader's list against what they read next."""
    hits = hit_matrix(top[:, :k], relevant).astype(np.float64)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    n_rel = np.minimum(np.diff(relevant.indptr), k)
    ideal = np.cumsum(discounts)[np.maximum(n_rel, 1) - 1]
    ndcg = (hits @ discounts[: hits.shape[1]]) / ideal
    return ndcg, hits.any(axis=1).astype(np.float64)


@dataclass
class RankerResult:
    """Per reader-period NDCG and hit rate of one ranker, period by period."""

    ndcg: list[np.ndarray] = field(default_factory=list)
    hit: list[np.ndarray] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what it chose at each period

    def pooled(self) -> tuple[np.ndarray, np.ndarray]:
        return (np.concatenate(self.ndcg) if self.ndcg else np.empty(0),
                np.concatenate(self.hit) if self.hit else np.empty(0))


@dataclass
class ReplayResult:
    """What each ranker scored at each scored period, and the periods themselves."""

    periods: list[dict[str, int]]  # start, end, readers of each scored period
    rankers: dict[str, RankerResult]
    timed: bool

    @property
    def reader_periods(self) -> int:
        return sum(p["readers"] for p in self.periods)

    def summary(self, baseline: str | None = None, seed: int = 0) -> dict[str, dict[str, float]]:
        """Per ranker: pooled means with 95% intervals (and ratios to ``baseline``)."""
        out: dict[str, dict[str, float]] = {}
        base = self.rankers[baseline].pooled() if baseline else None
        for name, result in self.rankers.items():
            ndcg, hit = result.pooled()
            row = {"ndcg": float(ndcg.mean()), "ndcg_ci": _half_width(ndcg),
                   "hit": float(hit.mean()), "hit_ci": _half_width(hit),
                   "reader_periods": len(ndcg)}
            if base is not None:
                for metric, own, other in (("ndcg", ndcg, base[0]), ("hit", hit, base[1])):
                    ratio, low, high = paired_ratio(own, other, seed=seed)
                    row |= {f"{metric}_ratio": ratio, f"{metric}_ratio_low": low,
                            f"{metric}_ratio_high": high}
            out[name] = row
        return out


def _half_width(values: np.ndarray) -> float:
    """Half the width of a normal 95% interval of the mean."""
    if len(values) < 2:
        return float("nan")
    return float(1.96 * values.std(ddof=1) / np.sqrt(len(values)))


def paired_ratio(values: np.ndarray, baseline: np.ndarray, seed: int = 0,
                 draws: int = BOOTSTRAP) -> tuple[float, float, float]:
    """mean(values) / mean(baseline) over the same reader-periods, with a bootstrap 95% CI."""
    if len(values) != len(baseline):
        raise ReplayError("a paired ratio needs the same reader-periods on both sides")
    if len(values) == 0 or baseline.mean() == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(values), size=(draws, len(values)))
    num, den = values[picks].mean(axis=1), baseline[picks].mean(axis=1)
    ratios = num[den > 0] / den[den > 0]
    low, high = np.percentile(ratios, [2.5, 97.5]) if len(ratios) else (np.nan, np.nan)
    return float(values.mean() / baseline.mean()), float(low), float(high)


def replay(log: Log, rankers: Sequence[Ranker], period: int, count: int, k: int = K,
           end: int | None = None,
           on_period: Callable[[Period, dict[str, float]], None] | None = None,
           on_lists: Callable[[Period, str, np.ndarray], None] | None = None) -> ReplayResult:
    """Fit every ranker at every cut-off and score it on the period after.

    ``on_lists(period, ranker, top)`` sees every scored list (book indices of the period's
    history, one row per reader of ``period.readers``), for measures beyond NDCG.

    The validation period (index 0) is not scored: choosing rankers choose on it (and on
    each scored period for the next one).
    """
    cut = periods(log, period, count, end)
    results = {r.name: RankerResult() for r in rankers}
    listed = []
    while cut:
        current = cut.pop(0)  # a history is let go once its period is scored
        history, readers = current.history, current.readers
        means: dict[str, float] = {}
        for ranker in rankers:
            choosing = hasattr(ranker, "choose")
            if not current.scored and not choosing:
                continue  # the validation period only serves rankers that choose
            ranker.fit(history)
            if len(readers) == 0:
                continue
            if current.scored:
                top = ranker.top_k(history, readers, k)
                if on_lists is not None:
                    on_lists(current, ranker.name, top)
                ndcg, hit = reader_scores(top, current.relevant, k)
                results[ranker.name].ndcg.append(ndcg)
                results[ranker.name].hit.append(hit)
                means[ranker.name] = float(ndcg.mean())
            if choosing:
                # The setting for the next cut-off, chosen on this period's readers.
                ranker.choose(current, lambda top, now=current: reader_scores(
                    top, now.relevant, k)[0])
                results[ranker.name].notes.append(getattr(ranker, "chosen", ""))
        if current.scored:
            listed.append({"start": current.start, "end": current.end,
                           "readers": int(len(readers))})
            if on_period is not None:
                on_period(current, means)
    return ReplayResult(periods=listed, rankers=results, timed=log.timed)
