"""The one-period backtest of a training run: the replay's last period before the data's end.

The train flow fits the chosen configuration at the cut-off one period before the
snapshot's end (and one period earlier, to choose the served terms on), publishes a
top-k for the period's returning readers and scores it on what they did there, beside
recent and all-time popularity. The served model's terms (models/terms.py: the recency
prior and, where the catalogue names genres, the genre taste side) are then chosen on
both periods — all of it before the data's end. Where a taste side is possible, the
family (the model and the prior; the same with the taste side beside; the taste side and
the prior in place of the model) is the one that did best on the last period with the
setting it had chosen on the period before (models/rankers.py, FamilyChoice).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.genres import genre_mix
from models.rankers import FitCache, Model, Popularity, TasteCache, served_choice
from models.recency import SETTLINGS
from models.replay import K, Log, ReplayError, parse_span, periods, replay
from models.terms import ScoreTerms

MODEL = "lightfm"
SERVED = "served model"
ALL_TIME = "popularity (all time)"
# A snapshot without timestamps is cut by rows: this share of its interactions per period.
UNTIMED_SHARE = 0.05
DEFAULT_WEIGHTS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)


@dataclass(frozen=True)
class Backtest:
    """What each ranker scored on the last period, and the terms chosen for serving."""

    period: str  # the span as asked ("7d", "50000rows")
    start: int
    end: int
    readers: int
    ndcg: dict[str, float]
    hit: dict[str, float]
    terms: ScoreTerms
    timed: bool
    served: str = ""  # the served family and its setting, in words

    @property
    def best_popularity(self) -> tuple[str, float]:
        """The popularity baseline (any window, or all time) that scored best."""
        name = max((n for n in self.ndcg if n.startswith("popularity")),
                   key=lambda n: self.ndcg[n])
        return name, self.ndcg[name]

    def rows(self, k: int = K) -> list[dict[str, object]]:
        """One row per ranker, for a table artifact."""
        return [{"ranker": name, f"ndcg_at_{k}": round(self.ndcg[name], 4),
                 f"hit_rate_at_{k}": round(self.hit[name], 4), "readers": self.readers}
                for name in self.ndcg]


def period_span(log: Log, period: str) -> tuple[int, str]:
    """The period in the log's unit: as asked, or for a log without time a share of rows."""
    if not log.timed and not period.strip().endswith(("row", "rows")):
        rows = max(1, int(len(log) * UNTIMED_SHARE))
        return rows, f"{rows}rows"
    return parse_span(period, log.timed), period


def run_backtest(ratings: pd.DataFrame, catalogue: np.ndarray, params: dict[str, object],
                 epochs: int, period: str, windows: Sequence[str], books: pd.DataFrame | None,
                 book_tags: pd.DataFrame | None = None, tags: pd.DataFrame | None = None,
                 weights: Sequence[float] = DEFAULT_WEIGHTS, threads: int = 2, seed: int = 0,
                 k: int = K, end: int | None = None, min_readers: int = 1) -> Backtest:
    """The configuration's backtest on the last period of ``ratings`` (with its timestamps).

    Raises ReplayError when the data does not hold two periods with history before them,
    or fewer than ``min_readers`` readers return in the last period or in the one before
    it (where the prior is chosen): a mean over a handful of readers cannot tell rankers
    apart, so it is better not to judge than to judge on noise. That is checked before
    anything is fitted.
    """
    log = Log.from_frame(ratings, catalogue)
    span, text = period_span(log, period)
    returning = [len(p.readers) for p in periods(log, span, 1, end)]
    if min(returning) < max(min_readers, 1):
        raise ReplayError(
            f"{returning[1]} reader(s) of the last {text} and {returning[0]} of the {text} "
            f"before it return (had read before it): at least {max(min_readers, 1)} in each "
            "are needed to judge a model on them (lengthen the period, or lower the minimum "
            "with GOODBOOKS_BACKTEST_MIN_READERS)")
    spans = [parse_span(w, log.timed) for w in windows] if log.timed else [span, 4 * span]
    cache = FitCache(params=params, seed=seed, threads=threads, books=books,
                     book_tags=book_tags, tags=tags, epochs=epochs)
    genres = genre_mix(log.catalogue, books, book_tags, tags)
    # Counting reads over each book's time out needs time: a log without it counts plainly.
    served = served_choice(cache, weights, spans,
                           TasteCache(genres) if genres is not None else None, SERVED,
                           settlings=SETTLINGS if log.timed else ())
    rankers = [*(Popularity(w, f"popularity (last {t})") for w, t in zip(
        spans, windows if log.timed else (f"{span}rows", f"{4 * span}rows"), strict=True)),
        Popularity(None, ALL_TIME), Model(cache, MODEL), served]
    result = replay(log, rankers, span, 1, k, end=end)
    if not result.periods or result.periods[0]["readers"] == 0:
        raise ReplayError(f"no reader of the last {text} returns: nothing to backtest on")
    summary = result.summary()
    return Backtest(period=text, start=result.periods[0]["start"],
                    end=result.periods[0]["end"], readers=result.periods[0]["readers"],
                    ndcg={n: v["ndcg"] for n, v in summary.items()},
                    hit={n: v["hit"] for n, v in summary.items()},
                    terms=served.setting, timed=log.timed, served=served.chosen)
