"""Drift measures: known answers, slow reference implementations, and planted drift."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy import stats
from scipy.spatial.distance import jensenshannon

from models import drift
from models.bundle import ScoringBundle
from models.drift import (
    BOOK_POPULARITY_JS,
    HIT_RATE_DROP,
    RATING_MIX_PSI,
    READER_ACTIVITY_KS,
    SHELF,
    TEST_SPLIT,
    UNSEEN_BOOKS,
    UNSEEN_READERS,
    DriftError,
    DriftThresholds,
    Performance,
    ReferenceStats,
    compute_current,
    detect_drift,
)
from models.generator import generate_continuation, generate_goodbooks, load_truth
from models.interactions import build_id_map, to_matrix
from models.recommender import FactorModel
from models.snapshot import write_snapshot

# --- the statistics ----------------------------------------------------------------------


def test_psi_has_the_textbook_value() -> None:
    assert drift.psi([50, 50], [50, 50]) == 0.0
    # (0.25 - 0.5) ln(0.25 / 0.5) + (0.75 - 0.5) ln(0.75 / 0.5)
    assert drift.psi([1, 1], [1, 3]) == pytest.approx(0.25 * np.log(2) + 0.25 * np.log(1.5))
    # An empty bucket is floored, not infinite.
    assert np.isfinite(drift.psi([1, 1, 0], [1, 1, 1]))


def test_js_divergence_matches_scipy_and_is_bounded() -> None:
    rng = np.random.default_rng(0)
    p, q = rng.random(30), rng.random(30)
    assert drift.js_divergence(p, q) == pytest.approx(jensenshannon(p, q, base=2) ** 2)
    assert drift.js_divergence(p, p) == pytest.approx(0.0, abs=1e-12)
    assert drift.js_divergence([1, 0], [0, 1]) == pytest.approx(1.0)
    assert drift.js_divergence(p, q) == pytest.approx(drift.js_divergence(q, p))


def test_expected_activity_of_two_equal_readers_by_hand() -> None:
    # Two readers with one rating each, two new ratings: each gets Binomial(2, 1/2), so an
    # active reader has one new rating with probability 0.5 / 0.75.
    cdf = drift.expected_activity_cdf(np.array([1, 1]), 2, np.array([0, 1, 2, 3]))
    np.testing.assert_allclose(cdf, [0.0, 2 / 3, 1.0, 1.0])


def test_activity_ks_equals_a_sweep_over_every_count() -> None:
    rng = np.random.default_rng(1)
    reference = rng.integers(19, 200, 500)
    current = rng.poisson(4.0, 300) + 1
    # Alternative test implementation: the gap at every integer up to the largest count.
    x = np.arange(0, current.max() + 2)
    empirical = np.array([(current <= v).mean() for v in x])
    slow = np.abs(empirical - drift.expected_activity_cdf(reference, int(current.sum()), x))
    assert drift.activity_ks(reference, current) == pytest.approx(slow.max())


def test_proportional_activity_gives_a_small_ks() -> None:
    rng = np.random.default_rng(2)
    reference = rng.integers(19, 200, 2000)
    current = rng.multinomial(20_000, reference / reference.sum())
    assert drift.activity_ks(reference, current[current > 0]) < 0.04
    # The same number of ratings from a tenth of the readers is far from proportional.
    burst = rng.multinomial(20_000, np.r_[reference[:200], np.zeros(1800)] / reference[:200]
                            .sum())
    assert drift.activity_ks(reference, burst[burst > 0]) > 0.5


def test_popularity_groups_expect_enough_ratings_each() -> None:
    counts = np.r_[np.arange(1000, 0, -1), np.zeros(50)]
    groups = drift.popularity_groups(counts, n_new=5000, min_expected=20)
    expected = np.bincount(groups, weights=counts * 5000 / counts.sum())
    assert (expected[expected > 0] >= 20 - 1e-9).all()
    assert len(np.unique(groups)) > 100
    # Groups follow popularity; the unrated books share the last one.
    assert (np.diff(groups[:1000]) >= 0).all()
    assert (groups[1000:] == groups.max()).all()


def make_reference(user_ids: np.ndarray, reader_counts: np.ndarray, book_counts: np.ndarray,
                   mix: np.ndarray, performance: Performance | None = None) -> ReferenceStats:
    return ReferenceStats(
        snapshot_id="ref",
        rating_counts=np.asarray(mix, dtype=np.int64),
        user_ids=np.asarray(user_ids, dtype=np.int64),
        reader_counts=np.asarray(reader_counts, dtype=np.int64),
        book_ids=np.arange(1, len(book_counts) + 1, dtype=np.int64),
        book_counts=np.asarray(book_counts, dtype=np.int64),
        performance=performance,
    )


def test_new_books_are_pooled_apart_and_counted_as_unseen() -> None:
    reference = make_reference([1, 2], [10, 10], [5, 5, 5, 5], [0, 0, 10, 10, 0])
    current = compute_current(pd.DataFrame({"user_id": [1, 1, 3, 3], "book_id": [1, 2, 9, 9],
                                            "rating": [3, 3, 4, 4]}), "window")
    ref, cur = drift.pooled_popularity(reference, current, min_expected=1)
    assert ref[-1] == 0 and cur[-1] == 2
    assert ref.sum() == 20 and cur.sum() == 4
    assert drift.unseen_share(reference.book_ids, current.book_ids, current.book_counts) == 0.5
    assert drift.unseen_share(reference.user_ids, current.user_ids, current.reader_counts) == 0.5


def test_unseen_pairs_drops_what_the_model_has_seen() -> None:
    seen = sp.csr_matrix(np.array([[1, 0], [0, 1]], dtype=np.float32))
    ratings = pd.DataFrame({"user_id": [10, 10, 20, 30, 20], "book_id": [1, 2, 2, 1, 7],
                            "rating": [5, 4, 3, 2, 1]})
    new = drift.unseen_pairs(ratings, np.array([10, 20]), np.array([1, 2]), seen)
    # (10, 1) and (20, 2) are known; an unknown reader or book is new by definition.
    assert list(zip(new.user_id, new.book_id, strict=True)) == [(10, 2), (30, 1), (20, 7)]


def test_served_performance_by_hand() -> None:
    served = {1: [10, 11, 12, 13], 2: [20]}
    interactions = pd.DataFrame({"user_id": [1, 1, 2, 3, 1], "book_id": [10, 14, 21, 10, 10]})
    performance = drift.served_performance(interactions, served, k=3)
    # Reader 3 has no list; (1, 10) counts once; 13 is beyond k.
    assert performance == Performance(k=3, hit_rate=1 / 3, precision=(1 / 3 + 0) / 2,
                                      interactions=3, readers=2)
    assert drift.served_performance(interactions.iloc[3:4], served, 3) is None


def test_ratings_outside_one_to_five_are_refused() -> None:
    with pytest.raises(DriftError, match="1..5"):
        compute_current(pd.DataFrame({"user_id": [1], "book_id": [1], "rating": [6]}), "x")


# --- the report --------------------------------------------------------------------------


@pytest.fixture
def reference() -> ReferenceStats:
    rng = np.random.default_rng(3)
    readers = rng.integers(19, 200, 1000)
    books = np.sort(rng.pareto(1.2, 800) * 50 + 5).astype(np.int64)[::-1]
    mix = (np.array([0.02, 0.06, 0.23, 0.36, 0.33]) * readers.sum()).astype(np.int64)
    return make_reference(np.arange(1, 1001), readers, books, mix,
                          Performance(k=10, hit_rate=0.1, precision=0.2, interactions=9000,
                                      readers=900, basis=SHELF))


def sample_window(reference: ReferenceStats, n: int, seed: int,
                  mix: np.ndarray | None = None) -> pd.DataFrame:
    """New ratings drawn from the reference's own distributions (no drift)."""
    rng = np.random.default_rng(seed)
    p_user = reference.reader_counts / reference.reader_counts.sum()
    p_book = reference.book_counts / reference.book_counts.sum()
    shares = reference.rating_counts if mix is None else mix
    return pd.DataFrame({
        "user_id": rng.choice(reference.user_ids, n, p=p_user),
        "book_id": rng.choice(reference.book_ids, n, p=p_book),
        "rating": rng.choice(np.arange(1, 6), n, p=shares / np.sum(shares)),
    })


def test_a_window_like_the_reference_raises_nothing(reference: ReferenceStats) -> None:
    window = sample_window(reference, 5000, seed=4)
    served = Performance(k=10, hit_rate=0.095, precision=0.05, interactions=5000, readers=900)
    report = detect_drift(reference, compute_current(window, "window"), served)
    assert not report.drifted and report.fired == []
    names = [m.name for m in report.measures]
    assert names == [RATING_MIX_PSI, READER_ACTIVITY_KS, BOOK_POPULARITY_JS, UNSEEN_READERS,
                     UNSEEN_BOOKS, HIT_RATE_DROP, "precision_at_10"]
    assert all(m.status in ("ok", "reported") for m in report.measures)
    assert report.measure(HIT_RATE_DROP).value == pytest.approx(0.05)
    assert "no drift" in report.summary()


def test_each_measure_fires_past_its_threshold(reference: ReferenceStats) -> None:
    inflated = sample_window(reference, 5000, seed=5, mix=np.array([0, 1, 5, 30, 64]))
    report = detect_drift(reference, compute_current(inflated, "window"))
    assert report.fired == [RATING_MIX_PSI]

    wave = sample_window(reference, 5000, seed=6)
    wave.loc[:999, "user_id"] = np.repeat(np.arange(5001, 5011), 100)
    report = detect_drift(reference, compute_current(wave, "window"))
    assert set(report.fired) == {READER_ACTIVITY_KS, UNSEEN_READERS}

    titles = sample_window(reference, 5000, seed=7)
    titles.loc[:499, "book_id"] = 9000 + np.arange(500) % 5
    report = detect_drift(reference, compute_current(titles, "window"))
    assert set(report.fired) == {BOOK_POPULARITY_JS, UNSEEN_BOOKS}

    window = sample_window(reference, 5000, seed=8)
    worse = Performance(k=10, hit_rate=0.05, precision=0.03, interactions=5000, readers=900)
    report = detect_drift(reference, compute_current(window, "window"), worse)
    assert report.fired == [HIT_RATE_DROP]
    assert report.drifted and "hit_rate_drop 0.5 > 0.15" in report.summary()


def test_too_little_data_is_reported_not_judged(reference: ReferenceStats) -> None:
    few = sample_window(reference, 100, seed=9, mix=np.array([0, 0, 0, 0, 1]))
    few_hits = Performance(k=10, hit_rate=0.0, precision=0.0, interactions=100, readers=90)
    report = detect_drift(reference, compute_current(few, "few"), few_hits)
    psi = report.measure(RATING_MIX_PSI)
    assert psi.value > psi.threshold and not psi.fired
    assert psi.status == "not judged (too little data)"
    assert not report.measure(HIT_RATE_DROP).fired
    assert not report.drifted and len(report.notes) == 2


def test_a_test_split_reference_is_not_judged(reference: ReferenceStats) -> None:
    optimistic = reference.with_performance(Performance(
        k=10, hit_rate=0.3, precision=0.3, interactions=9000, readers=900, basis=TEST_SPLIT))
    window = sample_window(reference, 5000, seed=10)
    served = Performance(k=10, hit_rate=0.1, precision=0.05, interactions=5000, readers=900)
    report = detect_drift(optimistic, compute_current(window, "w"), served)
    assert report.measure(HIT_RATE_DROP).value == pytest.approx(2 / 3)
    assert not report.drifted
    with pytest.raises(DriftError, match="different k"):
        detect_drift(reference, compute_current(window, "w"),
                     Performance(k=5, hit_rate=0.1, precision=0.1, interactions=10, readers=1))


def test_no_new_ratings_gives_an_empty_report(reference: ReferenceStats) -> None:
    empty = pd.DataFrame({"user_id": [], "book_id": [], "rating": []}, dtype=np.int64)
    report = detect_drift(reference, compute_current(empty, "nothing"))
    assert not report.drifted and report.n_ratings == 0
    assert report.measure(RATING_MIX_PSI).status == "unavailable"


def test_report_is_json_and_markdown(reference: ReferenceStats, tmp_path: Path) -> None:
    window = sample_window(reference, 2000, seed=11, mix=np.array([0, 1, 5, 30, 64]))
    current = compute_current(window, "window")
    report = detect_drift(reference, current)
    text = json.dumps(report.as_dict(), allow_nan=False)
    assert json.loads(text)["fired"] == [RATING_MIX_PSI]
    assert {row["measure"] for row in report.table()} >= {RATING_MIX_PSI, HIT_RATE_DROP}
    plot = drift.plot_drift(reference, current, report, tmp_path / "drift.png")
    markdown = report.to_markdown(str(plot))
    assert "| rating_mix_psi |" in markdown and "drift.png" in markdown
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_reference_survives_a_round_trip(reference: ReferenceStats, tmp_path: Path) -> None:
    path = reference.save(tmp_path / "bundle")
    loaded = drift.load_reference(tmp_path / "bundle")
    assert path.name == drift.REFERENCE_FILE
    assert loaded.snapshot_id == reference.snapshot_id
    assert loaded.performance == reference.performance
    for name in ("rating_counts", "user_ids", "reader_counts", "book_ids", "book_counts"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(reference, name))
    with pytest.raises(DriftError, match="does not exist"):
        drift.load_reference(tmp_path / "nowhere")


# --- on generated data, with the planted model serving -----------------------------------
# The planted model is a factor model (beta * taste . genre + popularity + quality), so the
# oracle can stand in for a trained model: fast, deterministic, and the best model there is.

BASE_USERS = 800
BASE_BOOKS = 800
WINDOW = 4000


@dataclass(frozen=True)
class Served:
    base: Path
    snapshot: Path
    bundle: Path
    reference: ReferenceStats
    lists: dict[int, list[int]]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Served:
    """A generated base, its snapshot, the oracle as the served model and the reference."""
    root = tmp_path_factory.mktemp("drift")
    base = root / "base"
    generate_goodbooks(base, n_users=BASE_USERS, n_books=BASE_BOOKS, seed=31)
    tables = {name: pd.read_csv(base / f"{name}.csv") for name in ("ratings", "books",
                                                                    "to_read")}
    snapshot = write_snapshot(tables, root / "processed", {"kind": "generate"}, {}, {})
    truth = load_truth(base)
    ratings = tables["ratings"]
    ids = build_id_map(ratings, tables["books"].book_id.to_numpy())
    seen = to_matrix(ids.user_index(ratings.user_id.to_numpy()),
                     ids.book_index(ratings.book_id.to_numpy()), (ids.n_users, ids.n_books))
    oracle = FactorModel(
        user_factors=(truth.beta * truth.taste[ids.user_ids - 1]).astype(np.float32),
        user_bias=np.zeros(ids.n_users, np.float32),
        item_factors=truth.genre_mix[ids.book_ids - 1],
        item_bias=(truth.popularity + truth.quality)[ids.book_ids - 1],
    )
    bundle_dir = ScoringBundle(ids=ids, factors=oracle, seen=seen, popular=ids.book_ids,
                               meta={"snapshot": snapshot.snapshot_id}).save(root / "bundle")
    # What the train flow does before logging the bundle.
    drift.write_reference(snapshot.path, bundle_dir, k=10)
    reference = drift.load_reference(bundle_dir)
    lists = drift.served_lists(ScoringBundle.load(bundle_dir), ids.user_ids, 10)
    return Served(base, snapshot.path, bundle_dir, reference, lists)


def test_reference_describes_the_snapshot_and_the_served_lists(served: Served) -> None:
    ratings = pd.read_csv(served.base / "ratings.csv")
    reference = served.reference
    assert reference.snapshot_id == served.snapshot.name
    assert reference.n_ratings == len(ratings)
    np.testing.assert_array_equal(reference.user_ids, np.arange(1, BASE_USERS + 1))
    np.testing.assert_array_equal(reference.book_ids, np.arange(1, BASE_BOOKS + 1))
    assert reference.reader_counts.sum() == reference.book_counts.sum() == len(ratings)
    performance = reference.performance
    assert performance is not None and performance.basis == SHELF and performance.k == 10
    # The lists served to readers find some of the books on their to-read shelves.
    assert 0.05 < performance.hit_rate < 0.5
    assert performance.interactions == len(pd.read_csv(served.base / "to_read.csv"))


def test_without_shelves_the_reference_falls_back_to_the_test_split(served: Served) -> None:
    ratings = pd.read_csv(served.base / "ratings.csv")
    performance = drift.training_performance(
        ScoringBundle.load(served.bundle), ratings, np.arange(1, BASE_BOOKS + 1), k=10)
    assert performance.basis == TEST_SPLIT
    # Held-out ratings are part of what was already drawn: the optimistic figure.
    assert performance.hit_rate > served.reference.performance.hit_rate


def monitor(served: Served, out: Path, kind: str, magnitude: float, seed: int):  # noqa: ANN201
    generate_continuation(served.base, out, kind, magnitude, WINDOW, seed)  # type: ignore[arg-type]
    window = pd.read_csv(out / "ratings.csv")
    return detect_drift(served.reference, compute_current(window, kind),
                        drift.served_performance(window, served.lists, 10))


def test_same_distribution_continuations_raise_no_alarm(served: Served, tmp_path: Path
                                                        ) -> None:
    for seed in range(50):
        report = monitor(served, tmp_path / str(seed), "none", 0.0, seed)
        assert not report.drifted, report.summary()
        assert report.measure(HIT_RATE_DROP).status == "ok"


@pytest.mark.parametrize(
    ("kind", "magnitude", "expected"),
    [
        ("taste_shift", 0.8, HIT_RATE_DROP),
        ("new_popular_books", 0.05, UNSEEN_BOOKS),
        ("rating_inflation", 0.6, RATING_MIX_PSI),
        ("new_readers", 0.1, UNSEEN_READERS),
    ],
)
def test_each_planted_drift_is_detected_at_the_default_thresholds(
    served: Served, tmp_path: Path, kind: str, magnitude: float, expected: str
) -> None:
    for seed in (1, 2):
        report = monitor(served, tmp_path / str(seed), kind, magnitude, seed)
        assert report.drifted and expected in report.fired, report.summary()


def test_thresholds_match_the_settings_defaults() -> None:
    from settings import Settings

    s = Settings(_env_file=None)
    t = DriftThresholds()
    assert (t.rating_mix_psi, t.reader_activity_ks, t.book_popularity_js,
            t.unseen_readers_share, t.unseen_books_share, t.hit_rate_drop, t.min_ratings,
            t.min_interactions) == (
        s.drift_psi_threshold, s.drift_ks_threshold, s.drift_js_threshold,
        s.drift_unseen_readers_threshold, s.drift_unseen_books_threshold,
        s.drift_hit_rate_drop_threshold, s.drift_min_ratings, s.drift_min_interactions)


def test_models_drift_does_not_import_prefect() -> None:
    import subprocess
    import sys

    code = "import sys, models.drift; print('prefect' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[2], check=True)
    assert out.stdout.strip() == "False"


def test_binomial_model_of_activity_is_the_multinomial_marginal() -> None:
    # Under proportional activity a reader's count is the multinomial's marginal binomial.
    reference = np.array([10, 30, 60])
    cdf = drift.expected_activity_cdf(reference, 50, np.arange(0, 51))
    pmf = np.diff(np.r_[0.0, cdf])
    weights = [stats.binom.pmf(np.arange(51), 50, c / 100) for c in reference]
    active = sum(1 - w[0] for w in weights)
    direct = sum(w for w in weights) / active
    direct[0] = 0.0
    np.testing.assert_allclose(pmf, direct, atol=1e-12)
