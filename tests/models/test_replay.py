"""The replay protocol, its rankers and the recency prior, on logs whose answers are known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from models.rankers import FitCache, Frozen, Model, Popularity, RecencyAware
from models.recency import (
    RecencyPrior,
    exposed_counts,
    prior_values,
    score_spread,
    standardised_log,
    with_prior,
)
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
from models.settling import PopularityTimeOut, Settling
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
    with pytest.raises(TrainingError, match="settling time must be positive"):
        RecencyPrior(weight=1.0, settling=0)
    with pytest.raises(TrainingError, match="settling time must be positive"):
        exposed_counts(np.array([0]), np.array([1]), 10, 5, 1, settling=-1)


# --- reads counted over each book's time out -----------------------------------------------


def test_reads_counted_over_each_book_s_time_out_by_hand() -> None:
    # Window [900, 1000), settling 20. Book 0: out long ago, 2 reads in the window. Book 1:
    # out before the window, 4 reads in it. Book 2: first read at 980, 3 reads. Book 3:
    # never read. Book 4: first read after now (it is not out yet).
    reads = [(0, 10), (0, 950), (0, 960), (1, 880), (1, 950), (1, 970), (1, 980), (1, 990),
             (2, 980), (2, 985), (2, 990), (4, 1005)]
    books, times = (np.array(c) for c in zip(*reads, strict=True))
    counts = exposed_counts(books, times, now=1000, window=100, n_books=5, settling=20)
    # Books 0 and 1 were out the whole window: mean rate m = (2 + 4) / (2 × 100) = 0.03.
    # Book 0: 100 (2 + 0.6) / (100 + 20); book 1: 100 (4 + 0.6) / 120; book 2 was out 20:
    # 100 (3 + 0.6) / (20 + 20) = 9, above book 1's 4 reads over the whole window.
    np.testing.assert_allclose(counts, [260 / 120, 460 / 120, 9.0, 0.0, 0.0])
    # Out the whole window, books keep their plain order; the prior is their log, standardised.
    plain = prior_values(books, times, 1000, 100, 5)
    np.testing.assert_allclose(plain, standardised_log(np.array([2.0, 4.0, 3.0, 0.0, 0.0])))
    np.testing.assert_allclose(prior_values(books, times, 1000, 100, 5, settling=20),
                               standardised_log(counts))
    # No book out the whole window: nothing to shrink toward, only the settling time.
    # Book 0 out 50 with 2 reads, settled by 50: 100 × 2 / (50 + 50); book 1 out 10: 100 / 60.
    young = exposed_counts(np.array([0, 0, 1]), np.array([950, 990, 990]), now=1000,
                           window=100, n_books=2, settling=50)
    np.testing.assert_allclose(young, [2.0, 100 / 60])


STEADY = np.arange(11, 16)  # read all along, a read every 10 seconds between them


def release(j: int) -> int:
    return 31 + j


def releases_world(scored: int = 3) -> pd.DataFrame:
    """A new book every period, read by two readers in the seconds before it starts and
    by the returning readers 1-5 in it (they read books 1-10 at the start); five steady
    books read all along, more often over any window than the new book was."""
    rows = [(u, b, 1) for u in READERS for b in range(1, 11)]
    rows += [(3000 + t, int(STEADY[(t // 10) % 5]), t) for t in range(10, end_of(scored), 10)]
    for j in range(scored + 1):
        start = 3 * P + P * j
        rows += [(4000 + 10 * j, release(j), start - 5), (4001 + 10 * j, release(j), start - 3)]
        rows += [(int(u), release(j), start + 10 + int(u)) for u in READERS]
    frame = pd.DataFrame(rows, columns=["user_id", "book_id", "timestamp"])
    return frame.sort_values("timestamp", kind="stable").reset_index(drop=True)


def test_a_new_release_is_found_by_counting_its_reads_over_its_time_out() -> None:
    log = Log.from_frame(releases_world(), catalogue=np.arange(1, 41))
    plain = Popularity(4 * P, "plain")
    time_out = PopularityTimeOut([P, 4 * P], settlings=(1, 10, 1000))
    result = replay(log, [plain, time_out], P, 3, end=end_of())
    summary = result.summary()
    # Counted plainly, two reads in the last seconds put the release sixth, behind the five
    # steady books: NDCG 1 / log2(7) for its one relevant book.
    assert summary["plain"]["ndcg"] == pytest.approx(1 / np.log2(7))
    # Over its 5 seconds out, settled by 1 or 10, it is read far faster than any: first.
    assert summary[time_out.name]["ndcg"] == pytest.approx(1.0)
    window, settling = time_out.settling.best()
    assert settling in (1, 10)
    assert time_out.settling.of(P) in (1, 10) and result.rankers[time_out.name].notes[0] == (
        f"window {window}, settling {settling}")


def test_the_plain_count_is_kept_where_counting_time_out_does_not_help() -> None:
    # The planted world's trends are read by a crowd 50 seconds before each period. Over the
    # short window they are first counted either way, and ties go to the plain count; over
    # the long one the evergreens' 50 reads each outnumber the trends' 20 unless the trends'
    # are counted over their 50 seconds out.
    ranker = PopularityTimeOut([P, 4 * P], (1, 10))
    result = replay(planted_log(), [ranker], P, 3, end=end_of())
    assert result.summary()[ranker.name]["ndcg"] == pytest.approx(1.0)
    assert ranker.settling.candidates == [None, 1, 10]
    assert ranker.settling.best() == (P, None) and ranker.settling.of(P) is None
    assert ranker.settling.of(4 * P) in (1, 10)
    with pytest.raises(ValueError, match="needs a settling time"):
        PopularityTimeOut([P], ())


def test_the_served_prior_carries_the_settling_it_was_chosen_with() -> None:
    cache = FitCache(params={**KNOWN_GOOD, "use_authors": False, "use_language": False,
                             "no_components": 8}, seed=0, threads=1, max_epochs=5)
    log = Log.from_frame(releases_world(), catalogue=np.arange(1, 41))
    prior = RecencyAware(cache, weights=[4, 16], windows=[P, 4 * P],
                         settling=Settling([P, 4 * P], (1, 10, 1000)))
    result = replay(log, [prior], P, 3, end=end_of())
    chosen = prior.setting.prior
    assert chosen.active and chosen.settling == prior.settling.of(chosen.window)
    assert chosen.settling in (1, 10)
    assert "counted over each book's time out" in result.rankers[prior.name].notes[-1]
    assert result.summary()[prior.name]["ndcg"] == pytest.approx(1.0)


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
