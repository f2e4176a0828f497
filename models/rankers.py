"""The rankers a replay compares: popularity (recent and all-time), the project's model
with the served terms (the recency prior, the genre taste side) and the choice among their
families that the train flow serves, and on generated data the oracle, the oracle's
readers and the same with readers learnt.

The model is fitted as the nightly flow fits what it publishes: early stopping on the
per-reader split of the history chooses the epoch count, then the same parameters are
fitted on every interaction before the cut-off. Fits are shared through a FitCache, so the
plain model, its recency-aware variants and the frozen one cost one fit per cut-off; the
readers' genre tastes are shared the same way through a TasteCache.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import scipy.sparse as sp

from models.features import build_item_features
from models.genres import (
    FIT_BETA,
    GenreMix,
    TasteSide,
    fit_tastes,
    popularity_offset,
    spread_sample,
    taste_spread,
)
from models.interactions import IdMap, temporal_split, time_split
from models.ranking import popularity_top_k, top_k_factors, top_k_scores, with_bias
from models.recency import RecencyPrior, recent_counts, score_spread
from models.recommender import FactorModel
from models.replay import History, K, Period, exclusion
from models.settling import Settling
from models.terms import ScoreTerms, with_terms
from models.tuning import candidate_from_params, fit_candidate, fit_everything

# The taste side's weights tried, in score deviations of the model (as the prior's are).
TASTE_WEIGHTS = (0.5, 1.0, 2.0, 4.0)
# Without a model the prior's weights (0.25-16) set the ratio; two taste weights carry it
# from 1/32 to 4.
ALONE_TASTE_WEIGHTS = (0.5, 1.0)


class Popularity:
    """The most read books in the last ``window`` before the cut-off (None: all time)."""

    def __init__(self, window: int | None = None, name: str | None = None) -> None:
        self.window = window
        self.name = name or ("popularity (all time)" if window is None
                             else f"popularity (last {window})")
        self.counts = np.empty(0)

    def fit(self, history: History) -> None:
        if self.window is None:
            self.counts = np.bincount(history.cols, minlength=history.ids.n_books)
        else:
            self.counts = recent_counts(history.cols, history.times, history.cutoff,
                                        self.window, history.ids.n_books)

    def top_k(self, history: History, readers: np.ndarray, k: int) -> np.ndarray:
        return popularity_top_k(self.counts, len(readers), k, exclusion(history, readers))


@dataclass
class Fitted:
    """One fit of the model at one cut-off."""

    cutoff: int
    ids: IdMap
    model: FactorModel
    epochs: int
    spread: float


@dataclass
class FitCache:
    """The project's model fitted once per cut-off, shared by the rankers that use it."""

    params: dict[str, object]
    seed: int = 0
    threads: int = 2
    max_epochs: int = 20
    books: pd.DataFrame | None = None  # goodbooks metadata for item features
    book_tags: pd.DataFrame | None = None
    tags: pd.DataFrame | None = None
    # A known epoch count (the study's): fit on everything for it, with no early stopping.
    epochs: int | None = None
    # Weigh each interaction by 0.5 ** (age / half_life) in the fit on everything.
    half_life: int | None = None
    # Stop the epochs on the last span of the history (global time) rather than on each
    # reader's latest interactions: what serving faces.
    stop_on_span: int | None = None
    fits: dict[int, Fitted] = field(default_factory=dict)

    def at(self, history: History) -> Fitted:
        if history.cutoff not in self.fits:
            # One cut-off at a time: a ranker that keeps an older fit holds it itself.
            self.fits = {history.cutoff: self._fit(history)}
        return self.fits[history.cutoff]

    def _fit(self, history: History) -> Fitted:
        if self.stop_on_span is None:
            split = temporal_split(history.frame(), book_ids=history.ids.book_ids)
        else:
            split = time_split(history.frame(), history.cutoff - self.stop_on_span,
                               book_ids=history.ids.book_ids)
        candidate = candidate_from_params(self.params, self.max_epochs, patience=3)

        def features_for(config):  # noqa: ANN001, ANN202 - FeatureConfig -> ItemFeatures
            if self.books is None:
                return None
            return build_item_features(split.ids, self.books, self.book_tags, self.tags,
                                       config)

        if self.epochs is not None:
            epochs = self.epochs
        else:
            trained = fit_candidate(split, candidate, features_for, K, self.threads, self.seed)
            epochs = trained.best_epoch + 1
        weights = None
        if self.half_life is not None:
            age = (history.cutoff - history.times).astype(np.float64)
            weights = sp.csr_matrix((0.5 ** (age / self.half_life),
                                     (history.rows, history.cols)),
                                    shape=(history.ids.n_users, history.ids.n_books))
            weights.sum_duplicates()
        model = fit_everything(split, candidate, features_for, epochs, self.threads,
                               self.seed, weights)
        return Fitted(cutoff=history.cutoff, ids=split.ids, model=model, epochs=epochs,
                      spread=score_spread(model, seed=self.seed))


def _top_k(model: FactorModel, rows: np.ndarray, history: History, readers: np.ndarray,
           k: int, threads: int) -> np.ndarray:
    query, items = with_bias(model.user_factors[rows], model.item_factors, model.item_bias)
    top, _ = top_k_factors(query, items, k, exclusion(history, readers), num_threads=threads)
    return top


class Model:
    """The project's model, refitted at every cut-off (what the nightly flow publishes)."""

    def __init__(self, cache: FitCache, name: str = "model") -> None:
        self.cache = cache
        self.name = name
        self.fitted: Fitted | None = None

    def fit(self, history: History) -> None:
        self.fitted = self.cache.at(history)

    def top_k(self, history: History, readers: np.ndarray, k: int) -> np.ndarray:
        return _top_k(self.fitted.model, readers, history, readers, k, self.cache.threads)


class Frozen:
    """The model fitted at the first scored cut-off and never again.

    Readers who arrived later get the popular list of that cut-off (as serving falls back
    for a reader the model does not know).
    """

    def __init__(self, cache: FitCache, name: str = "model fitted once") -> None:
        self.cache = cache
        self.name = name
        self.fitted: Fitted | None = None
        self.popular = np.empty(0)

    def fit(self, history: History) -> None:
        if self.fitted is None:
            self.fitted = self.cache.at(history)
            self.popular = np.bincount(history.cols, minlength=history.ids.n_books)

    def top_k(self, history: History, readers: np.ndarray, k: int) -> np.ndarray:
        frozen = self.fitted
        user_ids = history.ids.user_ids[readers]
        pos = np.searchsorted(frozen.ids.user_ids, user_ids)
        pos = np.minimum(pos, len(frozen.ids.user_ids) - 1)
        known = frozen.ids.user_ids[pos] == user_ids
        top = np.full((len(readers), k), -1, dtype=np.int64)
        if known.any():
            part = _top_k(frozen.model, pos[known], history, readers[known], k,
                          self.cache.threads)
            top[known, : part.shape[1]] = part
        if (~known).any():
            part = popularity_top_k(self.popular, int((~known).sum()), k,
                                    exclusion(history, readers[~known]))
            top[~known, : part.shape[1]] = part
        return top


class TasteCache:
    """Readers' genre tastes learnt from their reads before one cut-off (models/genres.py),
    each reader's when first asked, kept for the rankers that share them until the cut-off
    moves on. The side's unit (its score deviation) is set by a sample of every reader of
    the history, by the rule the served side uses (``spread_sample``)."""

    def __init__(self, genres: GenreMix, beta: float = FIT_BETA) -> None:
        self.genres = genres
        self.beta = beta
        self.cutoff: int | None = None
        self.seen = sp.csr_matrix((0, 0))
        self.offset = np.empty(0)
        self.tastes = np.empty((0, 0))  # NaN rows: not learnt yet
        self.spread = 1.0
        # The side last handed out: every tasted setting of a choice asks for the same
        # readers of the same period, and gets it without another copy.
        self.last: tuple[np.ndarray, TasteSide] | None = None

    def of(self, history: History, readers: np.ndarray) -> TasteSide:
        """The taste side of ``readers`` (rows in the order given)."""
        if len(self.genres.mix) != history.ids.n_books:
            raise ValueError(f"the genre mix covers {len(self.genres.mix)} books, the "
                             f"history {history.ids.n_books}")
        if self.cutoff != history.cutoff:
            self.cutoff, self.seen = history.cutoff, history.seen
            self.offset = popularity_offset(self.seen)
            self.tastes = np.full((history.ids.n_users, len(self.genres.names)), np.nan)
            sample = spread_sample(history.ids.n_users)
            self.spread = taste_spread(self._learnt(sample), self.genres.mix)
            self.last = None
        if self.last is None or self.last[0] is not readers:
            self.last = (readers, TasteSide(tastes=self._learnt(readers).astype(np.float32),
                                            mix=self.genres.mix, spread=self.spread))
        return self.last[1]

    def _learnt(self, readers: np.ndarray) -> np.ndarray:
        new = np.isnan(self.tastes[readers, 0])
        if new.any():
            self.tastes[readers[new]] = fit_tastes(self.seen[readers[new]], self.genres.mix,
                                                   self.offset, self.beta)
        return self.tastes[readers]


class RecencyAware:
    """The model plus a recent-popularity prior and, where the catalogue names genres, a
    genre taste side: the prior's weight, window and whether it replaces the learned item
    bias, and the taste side's weight and whether it replaces the fitted model, chosen
    on what came before each cut-off (the plain model is always a choice).

    Without a model (``cache`` None) it is the taste side alone, with the prior as every
    book's side: the genre-taste ranker.

    Each setting's NDCG on every period already past (the validation period first) is
    pooled over its reader-periods; the best pooled setting ranks the next period. One
    period alone holds few returning readers on a small log, and the choice would follow
    its noise.
    """

    def __init__(self, cache: FitCache | None, weights: Sequence[float], windows: Sequence[int],
                 name: str = "model + recency prior",
                 keep_bias: Sequence[bool] = (True, False), tastes: TasteCache | None = None,
                 taste_weights: Sequence[float] = TASTE_WEIGHTS,
                 keep_model: Sequence[bool] = (True, False), plain: bool = True,
                 threads: int = 2, settling: Settling | None = None) -> None:
        if cache is None and tastes is None:
            raise ValueError("a ranker needs a model or a taste side")
        self.cache = cache
        self.tastes = tastes
        self.name = name
        self.threads = cache.threads if cache is not None else threads
        if cache is None:
            # Without a model only the ratio of the two weights orders a list.
            keep_bias, keep_model, taste_weights = (True,), (False,), ALONE_TASTE_WEIGHTS
        self.grid = terms_grid(weights, windows, keep_bias,
                               taste_weights if tastes is not None else (), keep_model,
                               plain and cache is not None)
        self.setting = self.grid[0]
        self.totals = np.zeros(len(self.grid))
        self.readers = 0
        self.fitted: Fitted | None = None
        self.chosen = ""
        # How each window's prior counts reads: the plain count unless told to choose.
        self.settling = settling or Settling(windows)

    def fit(self, history: History) -> None:
        self.fitted = (self.cache.at(history) if self.cache is not None
                       else _without_model(history))

    def _ranked(self, setting: ScoreTerms, history: History, readers: np.ndarray,
                k: int) -> np.ndarray:
        fitted = self.fitted
        # The readers' rows only: a taste side is learnt for the readers a list is for.
        model = FactorModel(user_factors=fitted.model.user_factors[readers],
                            user_bias=fitted.model.user_bias[readers],
                            item_factors=fitted.model.item_factors,
                            item_bias=fitted.model.item_bias)
        model = with_terms(model, setting, self.settling.prior(history, setting.prior.window),
                           self.tastes.of(history, readers) if setting.tasted else None,
                           fitted.spread)
        return _top_k(model, np.arange(len(readers)), history, readers, k, self.threads)

    def top_k(self, history: History, readers: np.ndarray, k: int) -> np.ndarray:
        return self._ranked(self.setting, history, readers, k)

    def choose(self, period: Period, score: Callable[[np.ndarray], np.ndarray]) -> None:
        """Add this period's scores of every setting (the settling judged first); keep the
        best so far for the next."""
        self.settling.judge(period, score)
        self.totals += [float(score(self._ranked(s, period.history, period.readers, K)).sum())
                        for s in self.grid]
        self.readers += len(period.readers)
        best = self.grid[int(np.argmax(self.totals))]
        if best.prior.active:  # the settling it is served with
            best = replace(best, prior=replace(best.prior,
                                               settling=self.settling.of(best.prior.window)))
        self.setting = best
        self.chosen = self.setting.describe()


class FamilyChoice:
    """One of several families of settings (RecencyAware rankers, each choosing its own
    setting on the past), chosen by how well each did where its setting had been chosen
    before the period it was judged on.

    A family with more settings has a better best-in-hindsight score on the periods it was
    tuned on by chance alone; judging each family on the periods after its choice (its
    prequential score) does not reward that. Until a family has been judged so (the first
    scored cut-off), the best in hindsight chooses.
    """

    def __init__(self, families: Sequence[RecencyAware], name: str) -> None:
        if not families:
            raise ValueError("a choice needs at least one family")
        self.families = list(families)
        self.name = name
        self.prequential = np.zeros(len(self.families))  # NDCG summed after each choice
        self.judged = 0  # reader-periods judged after a choice
        self.current = self.families[0]
        self.chosen = ""

    @property
    def setting(self) -> ScoreTerms:
        """The chosen family's chosen terms."""
        return self.current.setting

    def fit(self, history: History) -> None:
        for family in self.families:
            family.fit(history)

    def top_k(self, history: History, readers: np.ndarray, k: int) -> np.ndarray:
        return self.current.top_k(history, readers, k)

    def choose(self, period: Period, score: Callable[[np.ndarray], np.ndarray]) -> None:
        """Judge each family's lists of this period (their settings chosen before it), let
        each choose again, then keep the family judged best so far."""
        if period.scored:
            self.prequential += [float(score(f.top_k(period.history, period.readers, K)).sum())
                           for f in self.families]
            self.judged += len(period.readers)
        for family in self.families:
            family.choose(period, score)
        if self.judged:
            self.current = self.families[int(np.argmax(self.prequential))]
        else:
            self.current = self.families[int(np.argmax([f.totals.max() for f in self.families]))]
        self.chosen = f"{self.current.name}: {self.current.chosen}"


def terms_grid(weights: Sequence[float], windows: Sequence[int], keep_bias: Sequence[bool],
               taste_weights: Sequence[float], keep_model: Sequence[bool] = (True, False),
               plain: bool = True) -> list[ScoreTerms]:
    """Every setting a choice of terms tries: with ``plain``, the model with no taste side
    (the plain model first), then each taste weight beside the model or in its place."""
    priors = [RecencyPrior(0.0, windows[0])] + [
        RecencyPrior(w, n, keep) for w in weights if w > 0 for n in windows
        for keep in keep_bias]
    grid = [ScoreTerms(prior) for prior in priors] if plain else []
    for taste in (t for t in taste_weights if t > 0):
        for keep in keep_model:
            grid += [ScoreTerms(prior, taste, keep) for prior in priors]
    return grid


# The families the served model is chosen among (FamilyChoice; served_choice).
PRIOR_FAMILY = "model + recency prior"
TASTE_BESIDE_FAMILY = "model + genre taste + recency prior"
TASTE_FAMILY = "genre taste + recency prior"


def served_choice(cache: FitCache, weights: Sequence[float], windows: Sequence[int],
                  tastes: TasteCache | None, name: str = PRIOR_FAMILY,
                  settlings: Sequence[int | None] = (None,)) -> RecencyAware | FamilyChoice:
    """What the train flow serves: the model with the recency prior and, where the
    catalogue names genres, the choice between that, the same with a genre taste side
    beside the model, and the taste side in its place; each window's settling chosen
    among ``settlings`` (Settling)."""
    if tastes is None:
        return RecencyAware(cache, weights, windows, name,
                            settling=Settling(windows, settlings))
    return FamilyChoice(served_families(cache, weights, windows, tastes, settlings), name)


def served_families(cache: FitCache, weights: Sequence[float], windows: Sequence[int],
                    tastes: TasteCache, settlings: Sequence[int | None] = (None,)
                    ) -> list[RecencyAware]:
    """The three families of served terms, each choosing its own setting, all with one
    choice of settling."""
    settling = Settling(windows, settlings)
    return [
        RecencyAware(cache, weights, windows, PRIOR_FAMILY, settling=settling),
        RecencyAware(cache, weights, windows, TASTE_BESIDE_FAMILY, tastes=tastes,
                     keep_model=(True,), plain=False, settling=settling),
        RecencyAware(None, weights, windows, TASTE_FAMILY, tastes=tastes,
                     threads=cache.threads, settling=settling),
    ]


def _without_model(history: History) -> Fitted:
    """No model (no factors, no bias) for a taste side to rank alone, its unit 1."""
    return Fitted(cutoff=history.cutoff, ids=history.ids,
                  model=FactorModel.empty(history.ids.n_users, history.ids.n_books), epochs=0,
                  spread=1.0)


class Oracle:
    """The planted truth of a generated dataset: the ceiling of any ranker on it."""

    def __init__(self, truth, name: str = "oracle") -> None:  # noqa: ANN001 - PlantedTruth
        self.truth = truth
        self.name = name

    def fit(self, history: History) -> None:
        """Nothing to learn: the truth is known."""

    def top_k(self, history: History, readers: np.ndarray, k: int) -> np.ndarray:
        from models.generator import oracle_top_k  # the generator owns its truth

        _require_generated_catalogue(history, self.truth.n_books, self.name)
        users = history.ids.user_ids[readers]
        # Data that moves: the rate at the cut-off (tastes then, books out by then).
        at = history.cutoff if self.truth.timeline is not None else None
        return oracle_top_k(self.truth, users, exclusion(history, readers), k, at=at) - 1


class KnownReaders:
    """Between the model and the oracle (generated data): readers known, books learnt.

    The planted truth's side of each reader — their taste at the cut-off and their
    favourite authors — plus a book side learnt as any ranker must learn it, from the reads
    before the cut-off: log(reads in the last window + ``smoothing``), in the truth's own
    units (log-rates), with the window chosen on the periods before each cut-off as the
    prior's is (and, given several ``strengths``, the scale of the readers' side with it;
    here only 1: the truth's side as it is). It splits the oracle's lead in two: what
    knowing readers exactly brings, and what the oracle knows of books — each one's rate at
    the very moment of the cut-off, read off the planted release wave — that a book side
    learnt from recent reads does not. Not a bound: a held-back reader side can rank
    better beside the counted book side (LearntReaders).
    """

    def __init__(self, truth, windows: Sequence[int], name: str = "oracle's readers",  # noqa: ANN001 - PlantedTruth
                 smoothing: float = 0.1, strengths: Sequence[float] = (1.0,)) -> None:
        self.truth = truth
        self.windows = list(windows)
        self.name = name
        self.smoothing = smoothing
        # Each setting: the readers' side scaled by a strength (only 1 here: the truth's
        # side is exact), beside the book side of one window.
        self.grid = [(strength, w) for strength in strengths for w in self.windows]
        self.setting = self.grid[0]
        self.totals = np.zeros(len(self.grid))
        self.chosen = ""
        self.book_sides: dict[int, np.ndarray] = {}

    def fit(self, history: History) -> None:
        _require_generated_catalogue(history, self.truth.n_books, self.name)
        self.book_sides = {
            w: np.log(recent_counts(history.cols, history.times, history.cutoff, w,
                                    history.ids.n_books) + self.smoothing)
            for w in self.windows}

    def _ranked(self, settings: Sequence[tuple[float, int]], history: History,
                readers: np.ndarray, k: int, chunk: int = 2048) -> list[np.ndarray]:
        """The top-k of each setting; each strength's readers' side is computed once."""
        seen = exclusion(history, readers)
        parts: list[list[np.ndarray]] = [[] for _ in settings]
        for start in range(0, len(readers), chunk):
            rows = np.arange(start, min(start + chunk, len(readers)))
            sides = {strength: self._reader_side(history, readers[rows], seen[rows], strength)
                     for strength in dict.fromkeys(strength for strength, _ in settings)}
            for part, (strength, window) in zip(parts, settings, strict=True):
                side, book_side = sides[strength], self.book_sides[window]
                part.append(top_k_scores(lambda r, s=side, b=book_side: s[r] + b,
                                         np.arange(len(rows)), k, seen[rows], chunk))
        return [np.vstack(p) if p else np.empty((0, k), dtype=np.int64) for p in parts]

    def _reader_side(self, history: History, readers: np.ndarray, reads: sp.csr_matrix,
                     strength: float) -> np.ndarray:
        """The truth's side of each reader at the cut-off (``reads``: theirs before it)."""
        at = history.cutoff if self.truth.timeline is not None else None
        side = self.truth.reader_scores(history.ids.user_ids[readers], at=at)
        return side if strength == 1.0 else strength * side

    def top_k(self, history: History, readers: np.ndarray, k: int) -> np.ndarray:
        return self._ranked([self.setting], history, readers, k)[0]

    def choose(self, period: Period, score: Callable[[np.ndarray], np.ndarray]) -> None:
        """Add this period's scores of every setting; keep the best so far for the next."""
        self.totals += [float(score(top).sum())
                        for top in self._ranked(self.grid, period.history, period.readers, K)]
        self.setting = self.grid[int(np.argmax(self.totals))]
        strength, window = self.setting
        self.chosen = f"window {window}" + ("" if len(self.grid) == len(self.windows)
                                            else f", strength {strength:g}")


class LearntTastes:
    """Each reader's taste learnt from their reads before one cut-off (PlantedTruth.
    learnt_taste), per strength, kept for the rankers that share it until the cut-off
    moves on."""

    def __init__(self, truth) -> None:  # noqa: ANN001 - PlantedTruth
        self.truth = truth
        self.history: History | None = None
        self.tastes: dict[float, np.ndarray] = {}  # NaN rows: not learnt yet

    def of(self, history: History, readers: np.ndarray, reads: sp.csr_matrix,
           strength: float = 1.0) -> np.ndarray:
        """The tastes of ``readers`` (their reads before the cut-off: ``reads``), learnt
        with beta scaled by ``strength``."""
        if self.history is not history:
            self.history, self.tastes = history, {}
        tastes = self.tastes.setdefault(
            strength, np.full((history.ids.n_users, len(self.truth.genres)), np.nan))
        new = np.isnan(tastes[readers, 0])
        if new.any():
            at = history.cutoff if self.truth.timeline is not None else None
            tastes[readers[new]] = self.truth.learnt_taste(
                reads[new], at=at, beta=strength * self.truth.beta)
        return tastes[readers]


class LearntReaders(KnownReaders):
    """The oracle's readers with each reader's taste learnt from their reads, not known.

    Everything else of the truth is given — every book's genre mix, popularity and
    quality, beta — and the book side is learnt from recent reads as the oracle's readers
    learn it. Each reader's taste is the one that makes their reads before the cut-off
    likeliest under a simplified draw of the truth's (PlantedTruth.learnt_taste), with
    beta scaled by a strength chosen with the window on the periods before each cut-off
    (below 1, the reader's side is capped where few reads put the taste at the edge of the
    simplex; with enough reads strength × beta × taste comes out about the same). Unlike
    the oracle's readers' strength, it does not scale the favourite authors. Favourite
    authors are left out (a Bayes estimate from each reader's author counts
    added nothing measurable), unless ``favourites_known``: then the truth's are added as
    the oracle's readers add them, beside the same learnt taste (pass both rankers one
    ``tastes`` to learn it once). It is one estimator, not a bound: its distance from the
    oracle's readers is what learning readers from their reads costs it, with the
    structure known; its distance from the model, what the model loses besides.
    """

    def __init__(self, truth, windows: Sequence[int],  # noqa: ANN001 - PlantedTruth
                 name: str = "learnt readers, known structure", smoothing: float = 0.1,
                 favourites_known: bool = False, tastes: LearntTastes | None = None,
                 strengths: Sequence[float] = (1.0, 0.7, 0.5, 0.35, 0.25)) -> None:
        super().__init__(truth, windows, name, smoothing, strengths)
        self.favourites_known = favourites_known
        # The lists and the window choice of one period share each reader's taste.
        self.tastes = tastes or LearntTastes(truth)
        self.mix_t = np.ascontiguousarray(truth.genre_mix.T, dtype=np.float64)

    def _reader_side(self, history: History, readers: np.ndarray, reads: sp.csr_matrix,
                     strength: float) -> np.ndarray:
        taste = self.tastes.of(history, readers, reads, strength)
        side = strength * self.truth.beta * taste @ self.mix_t
        if self.favourites_known:
            side += self.truth.favourite_scores(history.ids.user_ids[readers])
        return side


def _require_generated_catalogue(history: History, n_books: int, who: str) -> None:
    """The planted truth indexes books 1..n: refuse any other catalogue."""
    if not np.array_equal(history.ids.book_ids, np.arange(1, n_books + 1)):
        raise ValueError(f"{who}: the planted truth needs the generated catalogue "
                         "(book ids 1..n)")
