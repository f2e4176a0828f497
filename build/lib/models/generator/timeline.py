"""Time in the generated data: when readers are active, when books come out, how tastes move.

The static generator draws each reader's books from exp(s(u, b)) and then shuffles them in
time. With a timeline the draw itself knows time, so the data moves as a real catalogue
does:

- **Readers** are active over a window [start, end] (user ids follow first appearance, as
  in the real file) and rate in bursts: sessions of close ratings separated by long breaks.
- **Books** are either backlist (out before the log starts, read evenly over it) or released
  during the log. A new book's readership rises and fades: a share ``HYPE_SHARE`` of its
  readers come in a gamma-shaped wave after its release (time scale ``tau``, a few months),
  the rest evenly after it. With a real ``books.csv`` the release follows the book's
  original publication year; otherwise popular books are more often backlist.
- **Tastes drift**: a reader's taste moves from ``taste`` towards ``taste_end`` at
  ``DRIFT_PER_YEAR`` (the share of the way left that is covered in a year), so
  taste(t) = taste + w(t) (taste_end - taste) with w(t) = 1 - exp(-rate (t - start)).

A reader u reads book b at time t at a rate proportional to
exp(pop_b + quality_b + beta taste_u(t) . genre_b) * density_b(t), where density_b is the
book's share of its readers per second. The draw of a reader's set uses the rate averaged
over the reader's window (``log_window_mass``: a term added to the static keys, so the
popularity calibration still meets the per-book targets); each drawn book then gets its
moment within the window from the same rate (``assign_times``). The planted truth keeps all
of it, so an oracle can rank by the rate at any moment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TIMELINE_VERSION = 2  # changes whenever the same seed gives other data that moves
LOG_START = 1_262_304_000  # 2010-01-01 UTC: the generated log's first second
LOG_END = 1_504_224_000  # 2017-09-01 UTC: goodbooks-10k was collected in 2017
DAY = 86_400.0
YEAR = 365.25 * DAY
HYPE_SHARE = 0.8  # share of a new book's readers who come in its release wave
HYPE_MEDIAN_DAYS = 90.0  # median of the wave's time scale (its peak comes after one scale)
HYPE_SPREAD = 0.5  # log-normal spread of the time scale over books
BACKLIST_TOP, BACKLIST_BOTTOM = 0.85, 0.45  # P(backlist) of the most and least popular books
DRIFT_PER_YEAR = 0.25  # planted drift: a quarter of the way to the new taste per year
TIME_CANDIDATES = 24  # moments per drawn book among which its own is chosen
NEVER = -30.0  # log-weight of a book out of a reader's window: drawn only if nothing else is
SESSION_BREAK_SHARE = 0.08  # share of a reader's ratings that start a new session


@dataclass(frozen=True)
class Timeline:
    """Readers' windows and drift, books' releases; seconds since the Unix epoch."""

    start: np.ndarray  # float64 [n_users], the reader's first rating
    end: np.ndarray  # float64 [n_users], the reader's last rating
    taste_start: np.ndarray  # float32 [n_users, n_genres]: the reader's taste at the start
    taste_end: np.ndarray  # float32 [n_users, n_genres]: where the reader's taste drifts
    release: np.ndarray  # float64 [n_books]; below LOG_START: backlist
    tau: np.ndarray  # float64 [n_books], the release wave's time scale
    drift: float = DRIFT_PER_YEAR / YEAR  # per second

    @property
    def backlist(self) -> np.ndarray:
        return self.release < LOG_START

    def drift_weight(self, users: np.ndarray, at: np.ndarray) -> np.ndarray:
        """w(t): how far each reader's taste has moved towards taste_end at ``at``."""
        elapsed = np.maximum(np.asarray(at, np.float64) - self.start[users], 0.0)
        return -np.expm1(-self.drift * elapsed)

    def mean_drift_weight(self) -> np.ndarray:
        """w averaged over each reader's window, float64 [n_users]."""
        x = self.drift * np.maximum(self.end - self.start, 1.0)
        return 1.0 + np.expm1(-x) / x

    def taste_at(self, users: np.ndarray, at: np.ndarray | float) -> np.ndarray:
        """Each reader's taste at ``at`` (one moment, or one per reader), float32."""
        w = self.drift_weight(users, np.broadcast_to(at, users.shape))[:, None]
        start = self.taste_start[users]
        return (start + w * (self.taste_end[users] - start)).astype(np.float32)

    def mean_taste(self) -> np.ndarray:
        """Each reader's taste averaged over their window: what the draw of the set uses."""
        w = self.mean_drift_weight()[:, None]
        return (self.taste_start + w * (self.taste_end - self.taste_start)).astype(np.float32)

    def mass(self, books: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Share of each book's readers in [a, b] (broadcasting), float64."""
        release, tau = self.release[books], self.tau[books]
        new = release >= LOG_START
        lo, hi = np.maximum(a, np.where(new, release, LOG_START)), np.minimum(b, LOG_END)
        width = np.maximum(hi - lo, 0.0)
        after = np.maximum(LOG_END - release, 1.0)
        even = np.where(new, (1 - HYPE_SHARE) * width / after, width / (LOG_END - LOG_START))
        wave = HYPE_SHARE * (_wave_cdf(np.maximum(hi - release, 0.0), tau)
                             - _wave_cdf(np.maximum(lo - release, 0.0), tau))
        wave = np.where(new & (width > 0), wave / _wave_cdf(after, tau), 0.0)
        return even + wave

    def density(self, books: np.ndarray, at: np.ndarray) -> np.ndarray:
        """Share of each book's readers per second at ``at`` (broadcasting), float64."""
        release, tau = self.release[books], self.tau[books]
        new = release >= LOG_START
        age = at - release
        after = np.maximum(LOG_END - release, 1.0)
        wave = HYPE_SHARE * np.maximum(age, 0.0) / tau**2 * np.exp(-np.maximum(age, 0.0) / tau)
        out = np.where(new, (1 - HYPE_SHARE) / after + wave / _wave_cdf(after, tau),
                       1.0 / (LOG_END - LOG_START))
        return np.where(new & (age < 0), 0.0, out)

    def log_window_mass(self, users: np.ndarray, rows: int = 128) -> np.ndarray:
        """log(rate over each reader's window relative to an even one), float32
        [len(users), n_books]: the term the draw adds to the static keys."""
        out = np.empty((len(users), len(self.release)), dtype=np.float32)
        books = np.arange(len(self.release))[None, :]
        for lo in range(0, len(users), rows):
            part = users[lo:lo + rows]
            a, b = self.start[part][:, None], self.end[part][:, None]
            mass = self.mass(books, a, b) * (LOG_END - LOG_START) / np.maximum(b - a, DAY)
            with np.errstate(divide="ignore"):
                out[lo:lo + rows] = np.maximum(np.log(mass), NEVER)
        return out

    def log_density(self, books: np.ndarray, at: float) -> np.ndarray:
        """log(rate at ``at`` relative to an even one), float32, NEVER before release."""
        with np.errstate(divide="ignore"):
            out = np.log(self.density(books, np.float64(at)) * (LOG_END - LOG_START))
        return np.maximum(out, NEVER).astype(np.float32)

    def table(self) -> dict[str, np.ndarray]:
        return {"reader_start": self.start, "reader_end": self.end,
                "taste_start": self.taste_start, "taste_end": self.taste_end,
                "release": self.release, "tau": self.tau,
                "drift": np.array(self.drift, dtype=np.float64)}

    @classmethod
    def from_table(cls, data) -> Timeline:  # noqa: ANN001 - an npz archive or a mapping
        return cls(start=data["reader_start"], end=data["reader_end"],
                   taste_start=data["taste_start"], taste_end=data["taste_end"],
                   release=data["release"], tau=data["tau"],
                   drift=float(data["drift"]))


def _wave_cdf(age: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """CDF of a gamma(2, tau) wave at ``age``."""
    x = age / tau
    return -np.expm1(-x) - x * np.exp(-x)


def reader_windows(n_users: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Each reader's first and last second; reader i starts before reader i + 1."""
    span = LOG_END - LOG_START
    start = np.sort(rng.random(n_users))
    length = (1.0 - start) * rng.beta(1.5, 1.5, n_users)
    first = LOG_START + start * span
    return first, first + np.maximum(length * span, DAY)


def book_releases(n_books: int, rng: np.random.Generator,
                  years: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Release second and wave time scale per book (book_id order = popularity order).

    ``years`` (a real books.csv's original publication year, NaN where unknown) places a
    book published in the log's years at a random day of that year; older ones are
    backlist. Without them, P(backlist) falls from BACKLIST_TOP for the most popular book
    to BACKLIST_BOTTOM for the least, and new books come out evenly until the last tenth
    of the log.
    """
    span = LOG_END - LOG_START
    if years is not None:
        year = np.asarray(years, np.float64)
        first = int(np.datetime64(LOG_START, "s").astype("datetime64[Y]").astype(int)) + 1970
        new = np.isfinite(year) & (year >= first)
        # 1 January of each year, in seconds (numpy's calendar: no dependence on pandas).
        jan1 = ((np.where(new, year, first).astype(np.int64) - 1970).astype("datetime64[Y]")
                .astype("datetime64[s]").astype(np.int64).astype(np.float64))
        release = np.where(new, jan1 + rng.random(n_books) * YEAR, LOG_START - YEAR)
        release = np.minimum(release, LOG_START + 0.95 * span)
    else:
        rank = (np.arange(n_books) + 0.5) / n_books
        backlist = rng.random(n_books) < BACKLIST_TOP + (BACKLIST_BOTTOM - BACKLIST_TOP) * rank
        release = np.where(backlist, LOG_START - YEAR,
                           LOG_START + rng.random(n_books) * 0.9 * span)
    tau = HYPE_MEDIAN_DAYS * DAY * np.exp(HYPE_SPREAD * rng.standard_normal(n_books))
    return release.astype(np.float64), tau


def reader_sessions(timeline: Timeline, n_rated: np.ndarray, rng: np.random.Generator
                    ) -> np.ndarray:
    """Every reader's session moments, float64 [n_users, most sessions], NaN-padded.

    A reader with n ratings has 1 + Binomial(n - 1, SESSION_BREAK_SHARE) sessions: the
    first at the window's start, the last at its end when there are two or more, the
    others uniform between.
    """
    n_users = len(n_rated)
    count = 1 + rng.binomial(np.maximum(n_rated - 1, 0), SESSION_BREAK_SHARE)
    width = int(count.max())
    column = np.arange(width)[None, :]
    # The first session at 0, the last at 1, count - 2 uniform ones between (NaN beyond a
    # reader's own sessions; sorting puts NaN last).
    between = (column >= 1) & (column < count[:, None] - 1)
    u = np.where(between, rng.random((n_users, width)), np.nan)
    u[:, 0] = 0.0
    rows = np.flatnonzero(count > 1)
    u[rows, count[rows] - 1] = 1.0
    u = np.sort(u, axis=1)
    return timeline.start[:, None] + (timeline.end - timeline.start)[:, None] * u


def assign_times(
    timeline: Timeline,
    users: np.ndarray,
    books: np.ndarray,
    n_rated: np.ndarray,
    genre_mix: np.ndarray,
    beta: float,
    rng: np.random.Generator,
    chunk: int = 200_000,
) -> np.ndarray:
    """The moment of each drawn (reader, book) pair, int64 seconds.

    Each reader rates in sessions (``reader_sessions``); each of their drawn books goes to
    one session, chosen with weight density_b(t) exp(beta (taste_u(t) - mean taste_u) .
    genre_b) (Gumbel-max), so a new book is read in the sessions after its release, most
    in its wave, and a drifting reader's later sessions hold the books of their new taste.
    Within a session ratings are seconds to minutes apart. A book whose release comes
    after every session of the reader is read at its release or at the window's end,
    whichever is later.
    """
    sessions = reader_sessions(timeline, n_rated, rng)
    n, width = len(users), sessions.shape[1]
    chosen = np.empty(n, dtype=np.float64)
    mean_w = timeline.mean_drift_weight()
    for lo in range(0, n, chunk):
        hi = min(lo + chunk, n)
        u, b = users[lo:hi], books[lo:hi]
        moments = sessions[u]
        open_ = ~np.isnan(moments)
        at = np.where(open_, moments, timeline.start[u][:, None])
        towards = np.einsum("ij,ij->i", timeline.taste_end[u] - timeline.taste_start[u],
                            genre_mix[b])
        w = timeline.drift_weight(u[:, None], at)
        logw = beta * (w - mean_w[u][:, None]) * towards[:, None]
        density = timeline.density(b[:, None], at)
        with np.errstate(divide="ignore"):
            logw = np.where(open_ & (density > 0), logw + np.log(density), -np.inf)
        logw -= np.log(-np.log(rng.random((hi - lo, width))))
        pick = np.argmax(logw, axis=1)
        none = ~np.isfinite(logw.max(axis=1))
        rows = np.arange(hi - lo)
        chosen[lo:hi] = np.where(none, np.maximum(timeline.release[b], timeline.end[u]),
                                 at[rows, pick])
    # Seconds to minutes between the ratings of one session, in a random order.
    when = chosen + rng.exponential(40.0, n)  # a random order within each session
    order = np.lexsort((when, chosen, users))
    same = np.r_[False, (users[order][1:] == users[order][:-1])
                 & (chosen[order][1:] == chosen[order][:-1])]
    gaps = np.where(same, rng.exponential(40.0, n), 0.0)
    # cumulative gaps within each run of one session
    run = np.cumsum(~same) - 1
    total = np.cumsum(gaps)
    start_of_run = np.flatnonzero(~same)
    offset = total - total[start_of_run][run]
    out = np.empty(n, dtype=np.float64)
    out[order] = chosen[order] + offset
    return np.minimum(np.ceil(out), LOG_END - 1).astype(np.int64)
