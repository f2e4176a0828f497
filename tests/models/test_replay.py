"""The replay protocol, its rankers and the recency prior, on logs whose answers are known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from models.rankers import FitCache, Frozen, Model, Popularity, RecencyAware
from models.recency import RecencyPrior, score_spread, standardised_log, with_prior
from models.recommender import FactorModel
from models.replay import (
    Log,
    ReplayError,
    paired_ratio,
    parse_span,
    periods,
    reader_scores,
    replay,
)
from models.schema import TrainingError
from models.tuning import KNOWN_GOOD

P = 100  # the planted world's period, in seconds
READERS = np.arange(1, 6)  # the returning readers
EVERGREEN = np.arange(11, 21)  # read by many, long ago
CROWD = 20  # fresh readers who discover each period's trending books just before it


def trending(j: int) -> np.ndarray:
    return np.arange(21 + 3 * j, 24 + 3 * j)


def planted_world(scored: int = 3) -> pd.DataFrame:
    """What is read changes every period, and a crowd reads it first.

    At t=1 and 2: 50 readers read the ten evergreen books; the returning readers 1-5 read
    books 1-3. Period j (index 0 is the validation period) starts at 300 + 100j: the
    returning readers read that period's three trending books in it, and 20 fresh readers
    read the same books 50 seconds before it starts. Recent popularity (window 100) ranks
    exactly those three first; all-time popularity fills the top-10 with evergreens.
    """
    rows = [(1000 + u, b, 1) for u in range(50) for b in EVERGREEN]
    rows += [(u, b, 2) for u in READERS for b in (1, 2, 3)]
    for j in range(scored + 1):
        start = 3 * P + P * j
        rows += [(2000 + 100 * j + c, b, start - 50) for c in range(CROWD) for b in trending(j)]
        rows += [(u, b, start + 10 + int(u)) for u in READERS for b in trending(j)]
    frame = pd.DataFrame(rows, columns=["user_id", "book_id", "timestamp"])
    return frame.sort_values("timestamp", kind="stable").reset_index(drop=True)


def planted_log(scored: int = 3) -> Log:
    return Log.from_frame(planted_world(scored), catalogue=np.arange(1, 41))


def end_of(scored: int = 3) -> int:
    return 3 * P + P * (scored + 1)


# --- spans and periods --------------------------------------------------------------------


@pytest.mark.parametrize("text, timed, expected", [
    ("7d", True, 604_800), ("12h", True, 43_200), ("2w", True, 1_209_600),
    ("90m", True, 5_400), ("50000rows", False, 50_000), ("1row", False, 1),
])
def test_spans_read_in_the_log_s_unit(text: str, timed: bool, expected: int) -> None:
    assert parse_span(text, timed) == expected


@pytest.mark.parametrize("text, timed, message", [
    ("7d", False, "no timestamps.*in rows"),
    ("500rows", True, "has timestamps"),
    ("a week", True, "cannot read the span"),
    ("0d", True, "must be positive"),
])
def test_a_span_in_the_wrong_unit_says_which_to_use(text: str, timed: bool,
                                                    message: str) -> None:
    with pytest.raises(ReplayError, match=message):
        parse_span(text, timed)


def test_periods_end_at_the_log_s_end_and_score_only_what_is_new() -> None:
    end = int(planted_world()["timestamp"].max()) + 1
    cut = periods(planted_log(), P, 3)
    assert [(p.index, p.start, p.end) for p in cut] == [
        (i, end - (4 - i) * P, end - (3 - i) * P) for i in range(4)]
    for p in cut:
        # Only the five returning readers; the crowd of the next period is new, not scored.
        assert p.history.ids.user_ids[p.readers].tolist() == READERS.tolist()
        assert p.relevant.nnz == 15
    aligned = periods(planted_log(), P, 3, end=end_of())
    assert [p.start for p in aligned] == [300, 400, 500, 600]


def test_a_reading_already_in_the_history_is_not_scored() -> None:
    world = planted_world(1)
    again = pd.DataFrame({"user_id": [1], "book_id": [1], "timestamp": [int(
        world["timestamp"].max())]})  # reader 1 re-reads book 1 in the last period
    cut = periods(Log.from_frame(pd.concat([world, again]), np.arange(1, 41)), P, 1,
                  end=end_of(1))
    assert cut[-1].relevant.nnz == 15  # still only the three trending books each


def test_a_history_builds_what_its_readers_had_read_once() -> None:
    history = periods(planted_log(), P, 3)[-1].history
    seen = history.seen
    assert seen is history.seen  # every setting of a choice excludes the same matrix
    assert seen.nnz == len(set(zip(history.rows.tolist(), history.cols.tolist(), strict=True)))
    assert seen[history.rows, history.cols].min() >= 1


def test_more_periods_than_the_log_spans_is_refused_with_what_would_fit() -> None:
    with pytest.raises(ReplayError, match="spans 615 s: at most 5 leave history"):
        periods(planted_log(), P, 9)


def test_periods_without_returning_readers_are_refused() -> None:
    frame = pd.DataFrame({"user_id": np.arange(1, 101), "book_id": 1,
                          "timestamp": np.arange(100) * 10})  # every reader is new
    with pytest.raises(ReplayError, match="no scored period has a returning reader"):
        periods(Log.from_frame(frame), 100, 2)


def test_a_timestamp_that_is_not_a_number_is_refused() -> None:
    frame = pd.DataFrame({"user_id": [1, 2], "book_id": [1, 1], "timestamp": ["1", "soon"]})
    with pytest.raises(ReplayError, match="1 interaction.*no usable timestamp"):
        Log.from_frame(frame)


def test_without_timestamps_row_order_is_time() -> None:
    log = Log.from_frame(planted_world().drop(columns=["timestamp"]))
    assert not log.timed and log.times.tolist() == list(range(len(log)))


# --- metrics ------------------------------------------------------------------------------


def test_reader_scores_by_hand() -> None:
    top = np.array([[4, 7, 9], [1, 2, 3]])
    relevant = sp.csr_matrix(np.array([[0] * 7 + [1, 0, 1], [0] * 10]))
    relevant = relevant[[0, 1]]
    ndcg, hit = reader_scores(top, relevant, k=3)
    # Reader 0: hits at ranks 2 and 3 of two relevant: (1/log2 3 + 1/2) / (1 + 1/log2 3).
    expected = (1 / np.log2(3) + 0.5) / (1 + 1 / np.log2(3))
    assert ndcg[0] == pytest.approx(expected) and hit.tolist() == [1.0, 0.0]
    assert ndcg[1] == 0.0


def test_paired_ratio_of_a_doubled_ranker_is_two_with_no_spread() -> None:
    base = np.array([0.1, 0.3, 0.2, 0.5])
    assert paired_ratio(2 * base, base) == pytest.approx((2.0, 2.0, 2.0))


# --- rankers on the planted world ---------------------------------------------------------


def test_recent_popularity_finds_what_is_read_now_and_all_time_cannot() -> None:
    result = replay(planted_log(), [Popularity(P, "recent"), Popularity(None, "all time")],
                    P, 3, end=end_of())
    assert result.reader_periods == 15
    summary = result.summary("recent")
    assert summary["recent"]["ndcg"] == pytest.approx(1.0)
    assert summary["recent"]["hit"] == pytest.approx(1.0)
    assert summary["all time"]["ndcg"] == 0.0  # ten evergreens fill every list
    assert summary["all time"]["ndcg_ratio"] == 0.0


def test_the_recency_prior_is_chosen_on_the_past_and_recovers_the_trend() -> None:
    cache = FitCache(params={**KNOWN_GOOD, "use_authors": False, "use_language": False,
                             "no_components": 8}, seed=0, threads=1, max_epochs=5)
    model, frozen = Model(cache), Frozen(cache)
    prior = RecencyAware(cache, weights=[1, 4, 16], windows=[P, 4 * P])
    result = replay(planted_log(), [model, frozen, prior], P, 3, end=end_of())
    summary = result.summary()
    # Chosen on the validation period before the first cut-off: some weight, the short window.
    first = result.rankers[prior.name].notes[0]
    assert first.startswith("recency prior weight") and first.endswith("window 100")
    assert summary[prior.name]["ndcg"] > 0.9
    assert summary[prior.name]["ndcg"] > summary["model"]["ndcg"] + 0.3
    # The frozen model keeps its first fit: one cut-off, never refitted.
    assert frozen.fitted.cutoff == result.periods[0]["start"]


# --- the prior itself ---------------------------------------------------------------------


def test_score_spread_by_hand() -> None:
    model = FactorModel(user_factors=np.array([[1.0], [-1.0]], np.float32),
                        user_bias=np.zeros(2, np.float32),
                        item_factors=np.array([[1.0], [0.0], [-1.0]], np.float32),
                        item_bias=np.zeros(3, np.float32))
    # Each reader's scores are (1, 0, -1) or (-1, 0, 1): variance 2/3.
    assert score_spread(model) == pytest.approx(np.sqrt(2 / 3))
    prior = standardised_log(np.array([0.0, 0.0, np.e - 1]))
    assert prior.mean() == pytest.approx(0.0) and prior.std() == pytest.approx(1.0)
    boosted = with_prior(model, prior, weight=3.0)
    # Book 3 gains 3 spreads over the others: first for reader 2, and for reader 1 too.
    assert np.argmax(boosted.scores(np.array([0, 1])), axis=1).tolist() == [2, 2]
    assert with_prior(model, prior, 0.0) is model


def test_a_prior_in_place_of_the_learned_bias_by_hand() -> None:
    # Book 1 earned a large bias long ago; book 3 is what is read now.
    model = FactorModel(user_factors=np.array([[1.0], [-1.0]], np.float32),
                        user_bias=np.zeros(2, np.float32),
                        item_factors=np.array([[0.0], [0.0], [0.0]], np.float32),
                        item_bias=np.array([5.0, 0.0, 0.0], np.float32))
    prior = standardised_log(np.array([0.0, 0.0, np.e - 1]))  # (-1/√2, -1/√2, √2)
    beside = with_prior(model, prior, weight=1.0, spread=1.0)
    instead = with_prior(model, prior, weight=1.0, spread=1.0, keep_bias=False)
    np.testing.assert_allclose(beside.item_bias, [5 - 2 ** -0.5, -(2 ** -0.5), 2 ** 0.5],
                               rtol=1e-6)
    np.testing.assert_allclose(instead.item_bias, [-(2 ** -0.5), -(2 ** -0.5), 2 ** 0.5],
                               rtol=1e-6)
    assert np.argmax(beside.scores(np.array([0, 1])), axis=1).tolist() == [0, 0]
    assert np.argmax(instead.scores(np.array([0, 1])), axis=1).tolist() == [2, 2]
    # The factors are the fit's own: only the bias changes.
    assert instead.item_factors is model.item_factors


def test_a_prior_needs_a_positive_window_and_no_negative_weight() -> None:
    with pytest.raises(TrainingError, match="window must be positive"):
        RecencyPrior(weight=1.0, window=0)
    with pytest.raises(TrainingError, match="at least 0"):
        RecencyPrior(weight=-1.0)


def test_the_backtest_scores_the_last_period_and_chooses_the_prior_on_it() -> None:
    from models.backtest import run_backtest

    params = {**KNOWN_GOOD, "use_authors": False, "use_language": False, "no_components": 8}
    result = run_backtest(planted_world(), np.arange(1, 41), params, epochs=3, period="100s",
                          windows=["100s", "400s"], books=None, threads=1, end=end_of())
    assert (result.start, result.end, result.readers) == (600, 700, 5)
    assert result.best_popularity == ("popularity (last 100s)", pytest.approx(1.0))
    assert result.ndcg["served model"] > 0.9
    # No catalogue metadata, no genres: the terms are the prior's alone.
    assert result.terms.prior.weight > 0 and result.terms.prior.window == 100
    assert not result.terms.tasted and result.terms.keep_model


def test_a_backtest_without_time_takes_the_last_twentieth_of_the_rows() -> None:
    from models.backtest import period_span

    log = Log.from_frame(planted_world().drop(columns=["timestamp"]))
    assert period_span(log, "7d") == (len(log) // 20, f"{len(log) // 20}rows")
    assert period_span(log, "300rows") == (300, "300rows")


def test_a_backtest_with_too_few_returning_readers_judges_nothing() -> None:
    from models.backtest import run_backtest

    params = {**KNOWN_GOOD, "use_authors": False, "use_language": False, "no_components": 8}
    # The planted world has five returning readers in every period: six are asked for.
    with pytest.raises(ReplayError, match=r"5 reader\(s\) of the last 100s and 5 of the "
                                          r"100s before it return.*at least 6"):
        run_backtest(planted_world(), np.arange(1, 41), params, epochs=3, period="100s",
                     windows=["100s"], books=None, threads=1, end=end_of(), min_readers=6)
