"""The drift report as a figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.drift.measures import expected_activity_cdf, pooled_popularity
from models.drift.names import BOOK_POPULARITY_JS, RATING_MIX_PSI, READER_ACTIVITY_KS, STARS
from models.drift.report import DriftReport, _fmt
from models.drift.statistics import CurrentStats, ReferenceStats


def plot_drift(reference: ReferenceStats, current: CurrentStats, report: DriftReport,
               path: Path) -> Path:
    """A PNG of reference vs current: star mix, activity CDF, popularity, the measures."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    ax = axes[0, 0]
    width = 0.4
    ref_share = reference.rating_counts / max(reference.n_ratings, 1)
    cur_share = current.rating_counts / max(current.n_ratings, 1)
    ax.bar(STARS - width / 2, ref_share, width, label="reference")
    ax.bar(STARS + width / 2, cur_share, width, label="current")
    ax.set(title=f"Rating mix (PSI {_fmt(report.measure(RATING_MIX_PSI).value)})",
           xlabel="stars", ylabel="share of ratings")
    ax.legend()

    ax = axes[0, 1]
    if current.n_ratings:
        x = np.arange(1, int(current.reader_counts.max()) + 2)
        cur_cdf = np.searchsorted(np.sort(current.reader_counts), x, side="right")
        ax.step(x, expected_activity_cdf(reference.reader_counts, current.n_ratings, x),
                where="post", label="expected from reference")
        ax.step(x, cur_cdf / len(current.reader_counts), where="post", label="current")
        ax.set_xscale("log")
        ax.legend()
    ax.set(title=f"New ratings per reader (KS {_fmt(report.measure(READER_ACTIVITY_KS).value)})",
           xlabel="new ratings", ylabel="share of active readers (CDF)")

    ax = axes[1, 0]
    if current.n_ratings:
        ref_groups, cur_groups = pooled_popularity(reference, current)
        rank = np.arange(1, len(ref_groups) + 1)
        ax.plot(rank[:-1], np.cumsum(ref_groups[:-1]) / ref_groups.sum(), label="reference")
        ax.plot(rank[:-1], np.cumsum(cur_groups[:-1]) / cur_groups.sum(), label="current")
        ax.axhline(1 - cur_groups[-1] / cur_groups.sum(), color="grey", linestyle=":",
                   label="current: share on known books")
        ax.set_xscale("log")
        ax.legend()
    ax.set(title=f"Book popularity (JS {_fmt(report.measure(BOOK_POPULARITY_JS).value)})",
           xlabel="book group, most read first", ylabel="cumulative share of ratings")

    ax = axes[1, 1]
    judged = [m for m in report.measures if m.threshold is not None and m.value is not None]
    ratios = [m.value / m.threshold if m.threshold else 0.0 for m in judged]
    colours = ["tab:red" if m.fired else "tab:green" for m in judged]
    ax.barh([m.name for m in judged], ratios, color=colours)
    ax.axvline(1.0, color="black", linestyle="--")
    ax.set(title="Measures relative to their thresholds", xlabel="value / threshold")
    fig.suptitle(f"{report.source} vs snapshot {report.reference_snapshot}: "
                 f"{'DRIFT' if report.drifted else 'no drift'}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
