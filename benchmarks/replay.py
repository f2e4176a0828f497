"""Replay: tonight's lists judged on what readers do next, for any dataset the local source reads.

    .venv/bin/python benchmarks/replay.py --data DIR --period 7d --periods 12 \
        [--columns userId=user_id,movieId=book_id] [--books-file movies.csv] [--half-stars] \
        [--windows 7d,28d,91d,365d] [--weights 0.25,0.5,1,2,4,8,16] [--seeds 3]
    .venv/bin/python benchmarks/replay.py --users 6000 --period 60000rows --periods 4
    .venv/bin/python benchmarks/replay.py --users 6000 --moving --period 13w --periods 8
    .venv/bin/python benchmarks/replay.py --users 53424 --moving --period 13w --periods 4 \
        --seeds 1 --without-model [--without-learnt-readers]
    .venv/bin/python benchmarks/replay.py --users 53424 --moving --period 13w --periods 4 \
        --seeds 1 --stop-on time --without-learnt-readers --without-prior-halves

Rolling origin on global time (models/replay.py): at each cut-off every ranker is fitted on
everything before it and publishes a top-10 for each returning reader of the next period,
scored on what that reader does there. Rankers, all in the same run:

- **popularity** over each window of ``--windows`` (recent popularity) and over all time;
- **model**: the project's known-good LightFM, fitted as the nightly flow fits what it
  publishes (epochs stopped on the per-reader split of the history, then refitted on all of
  it), at every cut-off;
- **model fitted once**: the same fit at the first cut-off, never refitted;
- **model + recency prior**: the model with the recent-popularity prior
  (models/recency.py), its weight and window chosen on the periods before each cut-off only;
- **model + genre taste + recency prior** and **genre taste + recency prior** (where the
  catalogue names genres: goodreads genre shelves in book_tags.csv, or a ``genres``
  column): a genre taste side (models/genres.py) beside the model, or with the prior alone
  in place of the model, its weight chosen the same way;
- **served choice (the default)**: what the train flow serves — the first of those rows
  without genres, else the family that did best on the periods after its own choice
  (models/rankers.py, FamilyChoice; each family's row shows its own lists);
- **oracle** (generated data): the planted truth;
- **oracle's readers** (generated data): the truth's side of each reader with each book's
  side learnt from the reads before the cut-off (models/rankers.py, KnownReaders): what
  knowing readers exactly brings (not a bound);
- **learnt readers, known structure** (generated data): the same with each reader's taste
  learnt from their reads and its strength chosen, everything else of the truth given
  (LearntReaders): what an estimator of the generator's form learns of readers;
  and **learnt taste, favourite authors known**: the same, handed each reader's favourite
  authors too.

Without ``--data`` the data is generated: static (row order is time: give periods in
rows) or, with ``--moving``, data that moves (timestamps, releases that rise and fade,
drifting tastes; the oracle ranks by the rate at each cut-off).
Each seed refits every model; figures are pooled over reader-periods per seed, with 95%
intervals, and medians over seeds are quoted against the best popularity baseline (chosen
on the same periods: an optimistic baseline) and the model fitted once.
Writes benchmarks/results/replay-<name>.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
# Real titles, authors and publication years (the releases of data that moves) when the
# shared goodbooks copy is beside the project.
BOOKS_CSV = REPO.parent / "shared" / "data" / "goodbooks-10k" / "books.csv"
sys.path.insert(0, str(REPO))

from models.datasets import SourceLayout, locate_dataset, read_dataset_table  # noqa: E402
from models.generator import generate_goodbooks, load_truth  # noqa: E402
from models.genres import FIT_BETA, genre_mix  # noqa: E402
from models.rankers import (  # noqa: E402
    PRIOR_FAMILY,
    TASTE_FAMILY,
    FamilyChoice,
    FitCache,
    Frozen,
    KnownReaders,
    LearntReaders,
    LearntTastes,
    Model,
    Oracle,
    Popularity,
    RecencyAware,
    TasteCache,
    served_families,
)
from models.recency import SETTLINGS  # noqa: E402
from models.replay import Log, parse_span, replay  # noqa: E402
from models.schema import (  # noqa: E402
    BOOK_ID,
    BOOK_TAGS_FILE,
    BOOKS_FILE,
    RATINGS_FILE,
    TAGS_FILE,
    TIMESTAMP,
    USER_ID,
)
from models.settling import PopularityTimeOut, Settling  # noqa: E402
from models.taste import book_marks, shared_share  # noqa: E402
from models.tuning import KNOWN_GOOD  # noqa: E402

MODEL = "model"
FROZEN = "model fitted once"
DEFAULT = "served choice (the default)"
BESIDE = "model + prior beside the learned bias"
INSTEAD = "model + prior in place of the learned bias"
KNOWN = "oracle's readers"
LEARNT = "learnt readers, known structure"
LEARNT_TASTE = "learnt taste, favourite authors known"
TIME_OUT = "popularity over time out"


class Shown:
    """A family of the served choice as a row of its own. Listed before the choice, it
    ranks each period with the setting the family chose before it; the choice then lets
    every family choose again."""

    def __init__(self, family: RecencyAware) -> None:
        self.family = family
        self.name = family.name

    def fit(self, history) -> None:  # noqa: ANN001 - History
        self.family.fit(history)

    def top_k(self, history, readers: np.ndarray, k: int) -> np.ndarray:  # noqa: ANN001
        return self.family.top_k(history, readers, k)


def load(args: argparse.Namespace):  # noqa: ANN201 - (name, Log, books or None, truth or None)
    """The log to replay: a local dataset in any layout, or generated goodbooks data."""
    if args.data is None:
        kind = "moving" if args.moving else "static"
        root = REPO / "data" / "bench" / f"replay-u{args.users}-{kind}"
        if not (root / RATINGS_FILE).exists():
            generate_goodbooks(root, n_users=args.users, n_books=10_000, seed=42,
                               books_csv=BOOKS_CSV if args.moving and BOOKS_CSV.exists() else None,
                               moving=args.moving)
        layout, directory, truth = SourceLayout(), root, load_truth(root)
        name = f"generated-u{args.users}" + ("-moving" if args.moving else "")
    else:
        columns = dict(p.split("=") for p in args.columns.split(",")) if args.columns else {}
        layout = SourceLayout(columns=columns, books_file=args.books_file,
                              half_stars=args.half_stars)
        directory, truth, name = args.data, None, args.data.name
    files = locate_dataset(directory, layout)
    ratings = read_dataset_table(files, RATINGS_FILE)
    books = read_dataset_table(files, BOOKS_FILE)
    log = Log.from_frame(ratings, books["book_id"].to_numpy())
    # Item features where the catalogue has goodbooks metadata; identity features otherwise.
    with_metadata = "authors" in books.columns
    genres = genre_mix(log.catalogue, books, read_dataset_table(files, BOOK_TAGS_FILE),
                       read_dataset_table(files, TAGS_FILE))
    if genres is not None:
        print(f"genres: {len(genres.names)}, {genres.covered:.1%} of the books have one")
    return name, log, books if with_metadata else None, truth, ratings, genres


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="a dataset directory (default: generated)")
    parser.add_argument("--columns", default="", help="source=goodbooks column pairs")
    parser.add_argument("--books-file", default=BOOKS_FILE)
    parser.add_argument("--half-stars", action="store_true")
    parser.add_argument("--users", type=int, default=6000, help="generated readers")
    parser.add_argument("--moving", action="store_true",
                        help="generated data that moves (timestamps, releases, drift)")
    parser.add_argument("--period", default="7d", help="7d, 4w, ... or 50000rows")
    parser.add_argument("--periods", type=int, default=12, help="scored periods")
    parser.add_argument("--windows", default="7d,28d,91d,365d",
                        help="recent-popularity windows (baselines and the prior's choices)")
    parser.add_argument("--weights", default="0.25,0.5,1,2,4,8,16",
                        help="the prior's weights to choose from (score deviations)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--half-life", default="",
                        help="also replay the model fitted with interactions weighed by "
                             "0.5 ** (age / half-life), e.g. 365d (and with the prior)")
    parser.add_argument("--without-learnt-readers", action="store_true",
                        help="leave out the two learnt-readers rankers (generated data), "
                             "most of a --without-model run's time")
    parser.add_argument("--without-prior-halves", action="store_true",
                        help="leave out the rows of each half of the prior's bias choice "
                             "(two more grids of the prior a period)")
    parser.add_argument("--taste-beta", type=float, default=FIT_BETA,
                        help="the softmax's sharpness in the genre-taste fit")
    parser.add_argument("--without-model", action="store_true",
                        help="replay the baselines, the oracle and the oracle's readers "
                             "(known and learnt) only (no fit of the model: 40 minutes at "
                             "full size, most of it learning the readers' tastes)")
    parser.add_argument("--stop-on", choices=("reader", "time"), default="reader",
                        help="stop the model's epochs on each reader's latest interactions "
                             "(the per-reader split) or on the last period before the cut-off")
    args = parser.parse_args()
    if args.without_model and args.half_life:
        parser.error("--half-life weighs the model's fit: it has no meaning with --without-model")

    name, log, books, truth, ratings, genres = load(args)
    # Taste a person can see (a catalogue with titles and authors): the share of listed
    # books sharing an author or series with the reader's five-star books before the cut-off.
    marks = book_marks(books) if books is not None and "title" in books.columns else None
    stars = ratings["rating"].to_numpy()
    when = (ratings[TIMESTAMP].to_numpy() if TIMESTAMP in ratings.columns
            else np.arange(len(ratings)))
    five = ratings.loc[stars >= 5, [USER_ID, BOOK_ID]].assign(t=when[stars >= 5])
    period = parse_span(args.period, log.timed)
    windows = [(w, parse_span(w, log.timed)) for w in args.windows.split(",") if w]
    spans = [span for _, span in windows]
    weights = [float(w) for w in args.weights.split(",") if w]
    # Reads counted over each book's time out need time: a log without it counts plainly.
    settlings = SETTLINGS if log.timed else ()
    print(f"{name}: {len(log):,} interactions, {'timed' if log.timed else 'row order'}; "
          f"{args.periods} periods of {args.period} after a validation period")

    per_seed: list[dict[str, dict[str, float]]] = []
    started = time.perf_counter()
    for seed in range(args.seeds):
        params = dict(KNOWN_GOOD) if books is not None else {
            **KNOWN_GOOD, "use_authors": False, "use_language": False}
        stop = period if args.stop_on == "time" else None
        cache = FitCache(params=params, seed=seed, threads=args.threads, books=books,
                         stop_on_span=stop)
        popular = [Popularity(span, f"popularity (last {text})") for text, span in windows]
        rankers = [*popular, Popularity(None, "popularity (all time)")]
        if log.timed:
            rankers.append(PopularityTimeOut(spans, settlings, TIME_OUT))
        tastes = TasteCache(genres, args.taste_beta) if genres is not None else None
        if tastes is not None and args.without_model:
            rankers.append(RecencyAware(None, weights, spans, TASTE_FAMILY, tastes=tastes,
                                        threads=args.threads,
                                        settling=Settling(spans, settlings)))
        if not args.without_model:
            if tastes is None:
                served = [RecencyAware(cache, weights, spans, DEFAULT,
                                       settling=Settling(spans, settlings))]
            else:
                families = served_families(cache, weights, spans, tastes, settlings)
                served = [*(Shown(f) for f in families), FamilyChoice(families, DEFAULT)]
            rankers += [Model(cache, MODEL),
                        Frozen(cache, FROZEN),
                        *served]
            if not args.without_prior_halves:
                # The two halves of the prior's choice, to show what each brings.
                rankers += [RecencyAware(cache, weights, spans, BESIDE, keep_bias=(True,),
                                         settling=Settling(spans, settlings)),
                            RecencyAware(cache, weights, spans, INSTEAD, keep_bias=(False,),
                                         settling=Settling(spans, settlings))]
        if args.half_life:
            decayed = FitCache(params=params, seed=seed, threads=args.threads, books=books,
                               half_life=parse_span(args.half_life, log.timed),
                               stop_on_span=stop)
            rankers += [Model(decayed, f"{MODEL} (half-life {args.half_life})"),
                        RecencyAware(decayed, weights, spans,
                                     f"{PRIOR_FAMILY} (half-life {args.half_life})",
                                     settling=Settling(spans, settlings))]
        if truth is not None:
            rankers += [Oracle(truth), KnownReaders(truth, spans, KNOWN)]
            if not args.without_learnt_readers:
                learnt = LearntTastes(truth)  # learnt once for both rankers below
                rankers += [LearntReaders(truth, spans, LEARNT, tastes=learnt),
                            LearntReaders(truth, spans, LEARNT_TASTE, favourites_known=True,
                                          tastes=learnt)]
        t0 = time.perf_counter()
        shared: dict[str, list[float]] = {}

        def on_lists(p, ranker: str, top: np.ndarray,  # noqa: ANN001 - p: Period
                     shared: dict[str, list[float]] = shared) -> None:
            if marks is None:
                return
            users = p.history.ids.user_ids[p.readers]
            loved = five[(five["t"] < p.start) & five[USER_ID].isin(users)]
            lists = dict(zip(users.tolist(), p.history.ids.book_ids[top].tolist(), strict=True))
            n = int(np.isin(users, loved[USER_ID].unique()).sum()) * top.shape[1]
            if n:
                total = shared.setdefault(ranker, [0.0, 0.0])
                total[0] += shared_share(lists, loved[[USER_ID, BOOK_ID]], marks) * n
                total[1] += n

        result = replay(log, rankers, period, args.periods, on_lists=on_lists,
                        on_period=lambda p, m, s=seed: print(
            f"  seed {s} period {p.index}: {len(p.readers):,} readers, " + ", ".join(
                f"{k} {v:.3f}" for k, v in m.items() if not k.startswith("popularity (last"))))
        summary = result.summary()
        # The baselines: a window's popularity or all time's, best in hindsight.
        best_pop = max((r.name for r in rankers if r.name.startswith("popularity")
                        and r.name != TIME_OUT), key=lambda n: summary[n]["ndcg"])
        with_model = FROZEN in result.rankers
        per_seed.append({"summary": result.summary(best_pop, seed=seed),
                         "frozen": result.summary(FROZEN, seed=seed) if with_model else None,
                         "oracle": result.summary("oracle", seed=seed)
                         if "oracle" in result.rankers else None,
                         "time_out": result.summary(TIME_OUT, seed=seed)
                         if TIME_OUT in result.rankers else None,
                         "best_popularity": best_pop, "seconds": time.perf_counter() - t0,
                         "reader_periods": result.reader_periods, "periods": result.periods,
                         "served_choices": result.rankers[DEFAULT].notes
                                           if with_model else [],
                         "known_readers_choices": result.rankers[KNOWN].notes
                         if KNOWN in result.rankers else [],
                         "learnt_readers_choices": {
                             r: result.rankers[r].notes for r in (LEARNT, LEARNT_TASTE)
                             if r in result.rankers},
                         "shared_author_or_series": {r: v[0] / v[1] for r, v in shared.items()}})
        print(f"seed {seed}: {per_seed[-1]['seconds']:.0f} s, {result.reader_periods:,} "
              f"reader-periods; best popularity: {best_pop}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

    names = list(per_seed[0]["summary"])
    print(f"\n{name}: medians over {args.seeds} seed(s), "
          f"{per_seed[0]['reader_periods']:,} reader-periods each")
    with_frozen = per_seed[0]["frozen"] is not None
    print(f"  {'ranker':<30} {'NDCG@10 (±95%)':>18} {'hit@10':>8} {'x best pop [95%]':>20} "
          + (f"{'x frozen [95%]':>20}" if with_frozen else ""))
    table = {}
    for ranker in names:
        def med(key: str, which: str = "summary", r: str = ranker) -> float:
            return statistics.median(s[which][r][key] for s in per_seed)
        row = {k: med(k) for k in ("ndcg", "ndcg_ci", "hit", "ndcg_ratio", "ndcg_ratio_low",
                                   "ndcg_ratio_high")}
        if with_frozen:
            row |= {f"frozen_{k}": med(k, "frozen") for k in ("ndcg_ratio", "ndcg_ratio_low",
                                                               "ndcg_ratio_high")}
        table[ranker] = row
        print(f"  {ranker:<30} {row['ndcg']:>9.4f} ± {row['ndcg_ci']:.4f} {row['hit']:>8.3f} "
              f"{row['ndcg_ratio']:>7.3f} [{row['ndcg_ratio_low']:.2f}, "
              f"{row['ndcg_ratio_high']:.2f}]" + (
                  f" {row['frozen_ndcg_ratio']:>7.3f} [{row['frozen_ndcg_ratio_low']:.2f}, "
                  f"{row['frozen_ndcg_ratio_high']:.2f}]" if with_frozen else ""))
    for which, title in (("oracle", "oracle"), ("time_out", TIME_OUT)):
        if per_seed[0].get(which) is None:
            continue
        print(f"  x {title} [95%] (median over seeds):")
        for ranker in names:
            ratios = {k: statistics.median(s[which][ranker][k] for s in per_seed)
                      for k in ("ndcg_ratio", "ndcg_ratio_low", "ndcg_ratio_high")}
            table[ranker] |= {f"{which}_{k}": v for k, v in ratios.items()}
            print(f"    {ranker:<40} {ratios['ndcg_ratio']:.3f} "
                  f"[{ratios['ndcg_ratio_low']:.2f}, {ratios['ndcg_ratio_high']:.2f}]")
    if marks is not None:
        print("  share of listed books sharing an author or series with the reader's "
              "five-star books (median over seeds):")
        for ranker in names:
            values = [s["shared_author_or_series"].get(ranker) for s in per_seed]
            values = [v for v in values if v is not None]
            if values:
                table[ranker]["shared_author_or_series"] = statistics.median(values)
                print(f"    {ranker:<40} {statistics.median(values):.3f}")
    total = time.perf_counter() - started
    print(f"  best popularity per seed: {[s['best_popularity'] for s in per_seed]}")
    fits = "no fit of the model" if args.without_model else f"{args.periods + 1} fits of the model"
    print(f"  time: {total / args.seeds:.0f} s per seed ({fits}), "
          f"peak RSS {peak:.2f} GiB")
    out = REPO / "benchmarks" / "results" / (
        f"replay-{name}-{args.period}x{args.periods}"
        + ("-stop-on-time" if args.stop_on == "time" else "")
        + (f"-half-life-{args.half_life}" if args.half_life else "")
        + ("-without-model" if args.without_model else "")
        + ("-without-learnt-readers" if args.without_learnt_readers and truth is not None
           else "")
        + ("-without-prior-halves" if args.without_prior_halves and not args.without_model
           else "") + ".json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                               "table": table, "seeds": per_seed,
                               "seconds_per_seed": total / args.seeds, "peak_rss_gib": peak},
                              indent=2, default=float))
    print(f"written to {out}")


if __name__ == "__main__":
    np.seterr(invalid="ignore")
    main()
