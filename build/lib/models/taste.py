"""Taste a person can see: authors and series shared with what a reader loved.

NDCG says whether a list holds what a reader reads next; it does not say whether a person
looking at the list would recognise the reader in it. Authors and series do: a reader
whose five-star books include three Rick Riordan novels expects more Riordan, or the next
Percy Jackson. ``shared_share`` measures that — the share of recommended books that share
a (first) author or a series with the reader's top-rated books — and ``showing_reader``
picks a reader for whom that shows, so a demo can be judged by eye.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from models.schema import BOOK_ID, USER_ID

# goodbooks titles name their series in brackets: "The Lightning Thief (Percy Jackson and
# the Olympians, #1)".
SERIES = re.compile(r"\(([^()#]+?),?\s*#\s*[\d.]+[^()]*\)\s*$")


def book_marks(books: pd.DataFrame) -> pd.DataFrame:
    """Per book_id: its first author and its series (None when it is in none)."""
    first = (books["authors"].astype(str).str.split(",").str[0].str.strip()
             if "authors" in books.columns else pd.Series("", index=books.index))
    title = books["title"].astype(str) if "title" in books.columns else pd.Series(
        "", index=books.index)
    series = title.str.extract(SERIES, expand=False).str.strip()
    return pd.DataFrame({"author": first.to_numpy(), "series": series.to_numpy()},
                        index=books[BOOK_ID].to_numpy())


def top_rated(ratings: pd.DataFrame, least: int = 5) -> pd.DataFrame:
    """Each reader's books rated ``least`` stars or more (user_id, book_id)."""
    return ratings.loc[ratings["rating"] >= least, [USER_ID, BOOK_ID]]


def shared_share(lists: Mapping[int, Sequence[int]], loved: pd.DataFrame,
                 marks: pd.DataFrame) -> float:
    """Share of recommended books that share an author or a series with the reader's
    loved books (``top_rated``), over every list of a reader who loved something."""
    users = [u for u, items in lists.items() for _ in items]
    shown = pd.DataFrame({USER_ID: np.asarray(users, dtype=np.int64),
                          BOOK_ID: np.asarray([int(b) for items in lists.values()
                                               for b in items], dtype=np.int64)})
    shown = shown[shown[USER_ID].isin(loved[USER_ID].unique())]
    if shown.empty:
        return float("nan")
    shown = shown.join(marks, on=BOOK_ID)
    mine = loved.join(marks, on=BOOK_ID)

    def shares(column: str) -> np.ndarray:
        pairs = mine[[USER_ID, column]].dropna().drop_duplicates().assign(hit=True)
        found = shown[[USER_ID, column]].merge(pairs, on=[USER_ID, column], how="left")
        return found["hit"].eq(True).to_numpy()

    return float((shares("author") | shares("series")).mean())


def repeated_share(loved: pd.DataFrame, marks: pd.DataFrame) -> pd.Series:
    """Per reader: the share of their loved books whose author or series another of their
    loved books shares (how recognisable their taste is)."""
    frame = loved.join(marks, on=BOOK_ID)
    by_author = frame.duplicated([USER_ID, "author"], keep=False)
    by_series = frame["series"].notna() & frame.duplicated([USER_ID, "series"], keep=False)
    return (by_author | by_series).groupby(frame[USER_ID]).mean()


def showing_reader(ratings: pd.DataFrame, marks: pd.DataFrame) -> int:
    """A reader of typical activity whose loved books show a taste a person can see.

    Among readers within the middle fifth of activity with at least five five-star books,
    the one whose five-star books most often share an author or a series (lowest id on a
    tie); without any, the lowest id of those nearest the median number of ratings.
    """
    counts = ratings[USER_ID].value_counts()
    if counts.empty:
        raise ValueError("no ratings: there is no reader to show")
    low, high = np.quantile(counts.to_numpy(), [0.4, 0.6])
    typical = counts[(counts >= low) & (counts <= high)].index
    loved = top_rated(ratings[ratings[USER_ID].isin(typical)])
    enough = loved[USER_ID].value_counts()
    loved = loved[loved[USER_ID].isin(enough[enough >= 5].index)]
    if loved.empty:
        gap = (counts - counts.median()).abs()
        return int(gap[gap == gap.min()].index.min())
    share = repeated_share(loved, marks)
    best = share[share == share.max()]
    return int(best.index.min())
