"""How the recency prior counts a window's reads, chosen on the past: plainly, or over
each book's time out with a settling time (models/recency.py, ``exposed_counts``); and
the popularity baseline counted the same way."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from models.ranking import popularity_top_k
from models.recency import book_counts, prior_values
from models.replay import History, K, Period, exclusion


class Settling:
    """Whether each window's prior counts a book's reads over the time it has been out,
    and with how much settling (models/recency.py, ``exposed_counts``; None: the plain
    count), chosen per window on the periods so far.

    The prior is a forecast of what is read next, so each candidate is judged alone, as a
    popularity list: each returning reader's most read books of the window, counted that
    way, scored on what they read next and pooled over the reader-periods judged, as the
    terms are. The plain count is the first candidate and wins ties; before any period is
    judged it is the choice.

    One Settling serves rankers that choose together (the families of a FamilyChoice):
    the first to judge a period judges it for all. A ranker that chooses apart needs its
    own, or it would rank a period with a settling chosen on that very period.
    """

    def __init__(self, windows: Sequence[int], candidates: Sequence[int | None] = (None,)
                 ) -> None:
        self.windows = list(dict.fromkeys(windows))
        self.candidates = [None, *(c for c in candidates if c is not None)]
        self.totals = np.zeros((len(self.windows), len(self.candidates)))
        self.judged: int | None = None  # start of the last period judged
        self.priors: dict[tuple[int, int, int | None], np.ndarray] = {}

    def of(self, window: int) -> int | None:
        """The settling chosen for ``window`` so far."""
        row = self.totals[self.windows.index(window)]
        return self.candidates[int(np.argmax(row))]

    def best(self) -> tuple[int, int | None]:
        """The window and settling whose list did best so far."""
        w, c = np.unravel_index(int(np.argmax(self.totals)), self.totals.shape)
        return self.windows[int(w)], self.candidates[int(c)]

    def counts(self, history: History, window: int, settling: int | None) -> np.ndarray:
        return book_counts(history.cols, history.times, history.cutoff, window,
                           history.ids.n_books, settling)

    def prior(self, history: History, window: int) -> np.ndarray:
        """The standardised prior of ``window`` at the history's cut-off, as chosen."""
        settling = self.of(window)
        key = (history.cutoff, window, settling)
        if key not in self.priors:
            # Every weight and both bias modes share it; only this cut-off's are kept.
            self.priors = {k: v for k, v in self.priors.items() if k[0] == history.cutoff}
            self.priors[key] = prior_values(history.cols, history.times, history.cutoff,
                                            window, history.ids.n_books, settling)
        return self.priors[key]

    def judge(self, period: Period, score: Callable[[np.ndarray], np.ndarray]) -> None:
        """Add this period's score of every candidate's list (once per period)."""
        if period.start == self.judged or len(self.candidates) == 1:
            return
        self.judged = period.start
        history, readers = period.history, period.readers
        seen = exclusion(history, readers)
        for i, window in enumerate(self.windows):
            for j, settling in enumerate(self.candidates):
                top = popularity_top_k(self.counts(history, window, settling), len(readers),
                                       K, seen)
                self.totals[i, j] += float(score(top).sum())


class PopularityTimeOut:
    """The most read books counted over each one's time out in the window (Settling): the
    window and settling whose list did best on the periods before the cut-off."""

    def __init__(self, windows: Sequence[int], settlings: Sequence[int | None],
                 name: str = "popularity over time out") -> None:
        if not any(c is not None for c in settlings):
            raise ValueError("popularity over time out needs a settling time to try (and "
                             "a log with timestamps)")
        self.settling = Settling(windows, settlings)
        self.name = name
        self.chosen = ""

    def fit(self, history: History) -> None:
        """Nothing to learn before the lists: they are counted when asked."""

    def top_k(self, history: History, readers: np.ndarray, k: int) -> np.ndarray:
        counts = self.settling.counts(history, *self.settling.best())
        return popularity_top_k(counts, len(readers), k, exclusion(history, readers))

    def choose(self, period: Period, score: Callable[[np.ndarray], np.ndarray]) -> None:
        self.settling.judge(period, score)
        window, settling = self.settling.best()
        self.chosen = f"window {window}, settling {settling}"
