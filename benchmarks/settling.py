"""Each window's popularity list counted plainly and over each book's time out, per settling.

    .venv/bin/python benchmarks/settling.py --data ../shared/data/ml-latest-small \
        --columns userId=user_id,movieId=book_id --books-file movies.csv --half-stars \
        --period 13w --periods 12
    .venv/bin/python benchmarks/settling.py --users 6000 --moving --period 13w --periods 4

The replay of benchmarks/replay.py (same data options, same periods) with popularity lists
only: for each window, the plain count and the count over each book's time out
(models/recency.py, ``exposed_counts``) at each settling time, every one fixed, none
chosen. It shows why the served prior chooses its settling on the past rather than fixing
one (benchmarks/README.md, "Counting reads over each book's time out"). No model is
fitted: a few seconds on `ml-latest-small`, a minute at 6,000 readers. Needs a log with
timestamps.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from replay import load  # noqa: E402 - benchmarks/replay.py: the same data options

from models.rankers import Popularity  # noqa: E402
from models.recency import exposed_counts  # noqa: E402
from models.replay import parse_span, replay  # noqa: E402

SETTLINGS = ("1d", "7d", "28d", "91d", "365d")


class Settled(Popularity):
    """The most read books of the window, counted over each one's time out."""

    def __init__(self, window: int, settling: int, name: str) -> None:
        super().__init__(window, name)
        self.settling = settling

    def fit(self, history) -> None:  # noqa: ANN001 - History
        self.counts = exposed_counts(history.cols, history.times, history.cutoff,
                                     self.window, history.ids.n_books, self.settling)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, help="a dataset directory (default: generated)")
    parser.add_argument("--columns", default="", help="source=goodbooks column pairs")
    parser.add_argument("--books-file", default="books.csv")
    parser.add_argument("--half-stars", action="store_true")
    parser.add_argument("--users", type=int, default=6000, help="generated readers")
    parser.add_argument("--moving", action="store_true", help="generated data that moves")
    parser.add_argument("--period", default="13w")
    parser.add_argument("--periods", type=int, default=4)
    parser.add_argument("--windows", default="7d,28d,91d,365d")
    args = parser.parse_args()
    name, log, *_ = load(args)
    if not log.timed:
        parser.error("the log has no timestamps: there is no time out to count over")
    windows = [(w, parse_span(w, True)) for w in args.windows.split(",") if w]
    rankers = []
    for text, window in windows:
        rankers.append(Popularity(window, f"{text} plain"))
        rankers += [Settled(window, parse_span(s, True), f"{text} {s}") for s in SETTLINGS]
    result = replay(log, rankers, parse_span(args.period, True), args.periods)
    summary = result.summary()
    print(f"{name}: {args.periods} periods of {args.period}, {result.reader_periods:,} "
          "reader-periods; NDCG@10 of each window's popularity list")
    print(f"  {'window':<8} {'plain':>8} " + " ".join(f"{s:>8}" for s in SETTLINGS))
    for text, _ in windows:
        print(f"  {text:<8} {summary[f'{text} plain']['ndcg']:>8.4f} "
              + " ".join(f"{summary[f'{text} {s}']['ndcg']:>8.4f}" for s in SETTLINGS))


if __name__ == "__main__":
    np.seterr(invalid="ignore")
    main()
