"""The distances between reference and current statistics, one function each."""

from __future__ import annotations

import numpy as np
from scipy import stats

from models.drift.names import POPULARITY_MIN_EXPECTED, PSI_FLOOR
from models.drift.statistics import CurrentStats, ReferenceStats


def psi(expected: np.ndarray, actual: np.ndarray, floor: float = PSI_FLOOR) -> float:
    """Population stability index between two count (or share) vectors over one set of bins."""
    p = np.maximum(np.asarray(expected, np.float64) / max(np.sum(expected), 1e-300), floor)
    q = np.maximum(np.asarray(actual, np.float64) / max(np.sum(actual), 1e-300), floor)
    return float(np.sum((q - p) * np.log(q / p)))


def expected_activity_cdf(reference_counts: np.ndarray, n_new: int, x: np.ndarray) -> np.ndarray:
    """P(X <= x) for the new ratings X of an active reader, under proportional activity.

    A reader with c of the reference's N ratings makes Binomial(n_new, c / N) of n_new new
    ratings; "active" readers are those with at least one, so X is conditioned on X >= 1.
    """
    values, multiplicity = np.unique(np.asarray(reference_counts, np.int64), return_counts=True)
    p = values / float(np.sum(reference_counts))
    x = np.asarray(x, dtype=np.float64)
    zero = stats.binom.pmf(0, n_new, p)
    cdf = stats.binom.cdf(x[None, :], n_new, p[:, None]) - zero[:, None]
    active = float(np.sum(multiplicity * (1.0 - zero)))
    out = np.clip((multiplicity @ np.maximum(cdf, 0.0)) / max(active, 1e-300), 0.0, 1.0)
    return np.where(x < 1, 0.0, out)


def activity_ks(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """Largest gap between the empirical and the expected CDF of new ratings per reader."""
    current = np.sort(np.asarray(current_counts, np.int64))
    if current.size == 0:
        return 0.0
    n_new = int(current.sum())
    values = np.unique(current)
    # Both CDFs are step functions on the integers and the expected one only rises, so the
    # largest gap sits at a value of the sample or just below one.
    points = np.unique(np.concatenate([values, values - 1]))
    empirical = np.searchsorted(current, points, side="right") / current.size
    expected = expected_activity_cdf(reference_counts, n_new, points)
    return float(np.max(np.abs(empirical - expected)))


def popularity_groups(reference_counts: np.ndarray, n_new: int,
                      min_expected: float = POPULARITY_MIN_EXPECTED) -> np.ndarray:
    """Group index of each reference book: popularity order, >= min_expected new ratings each."""
    counts = np.asarray(reference_counts, np.float64)
    order = np.lexsort((np.arange(len(counts)), -counts))
    expected = (counts[order] * (n_new / max(counts.sum(), 1e-300))).tolist()
    group_of_sorted = np.empty(len(counts), dtype=np.int64)
    group, filled = 0, 0.0
    for i, value in enumerate(expected):
        group_of_sorted[i] = group
        filled += value
        if filled >= min_expected:
            group, filled = group + 1, 0.0
    # The last group, short of min_expected (the least read and unread books), joins the
    # one before it.
    if 0.0 < filled < min_expected or filled == 0.0 and group > 0:
        group_of_sorted[group_of_sorted == group] = max(group - 1, 0)
    groups = np.empty(len(counts), dtype=np.int64)
    groups[order] = group_of_sorted
    return groups


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence in bits (0 = identical, 1 = disjoint) of two count vectors."""
    p = np.asarray(p, np.float64) / max(np.sum(p), 1e-300)
    q = np.asarray(q, np.float64) / max(np.sum(q), 1e-300)
    m = (p + q) / 2.0

    def kl(a: np.ndarray) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log2(a[mask] / m[mask])))

    return max(0.0, 0.5 * kl(p) + 0.5 * kl(q))


def popularity_js(reference: ReferenceStats, current: CurrentStats,
                  min_expected: float = POPULARITY_MIN_EXPECTED) -> float:
    """JS divergence of the spread of ratings over (pooled) books; new books pooled apart."""
    ref_p, cur_p = pooled_popularity(reference, current, min_expected)
    return js_divergence(ref_p, cur_p)


def pooled_popularity(reference: ReferenceStats, current: CurrentStats,
                      min_expected: float = POPULARITY_MIN_EXPECTED
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Reference and current ratings per pooled group; the last group holds new books."""
    groups = popularity_groups(reference.book_counts, current.n_ratings, min_expected)
    n_groups = int(groups.max(initial=-1)) + 2
    ref = np.bincount(groups, weights=reference.book_counts, minlength=n_groups)
    pos = np.minimum(np.searchsorted(reference.book_ids, current.book_ids),
                     max(len(reference.book_ids) - 1, 0))
    known = reference.book_ids[pos] == current.book_ids
    cur = np.bincount(groups[pos[known]], weights=current.book_counts[known],
                      minlength=n_groups)
    cur[-1] += current.book_counts[~known].sum()
    return ref, cur


def unseen_share(known_ids: np.ndarray, ids: np.ndarray, counts: np.ndarray) -> float:
    """Share of the new ratings whose id (reader or book) is not among known_ids."""
    total = counts.sum()
    if total == 0:
        return 0.0
    return float(counts[~np.isin(ids, known_ids)].sum() / total)
