"""Taste a person can see, on catalogues whose answers are worked out by hand."""

from __future__ import annotations

import pandas as pd
import pytest

from models.taste import book_marks, repeated_share, shared_share, showing_reader, top_rated

BOOKS = pd.DataFrame({
    "book_id": [1, 2, 3, 4, 5, 6],
    "title": ["The Lightning Thief (Percy Jackson and the Olympians, #1)",
              "The Sea of Monsters (Percy Jackson and the Olympians, #2)",
              "The Lost Hero (The Heroes of Olympus, #1)",
              "The Girl with the Dragon Tattoo (Millennium #1)",
              "Into the Wild", "Dune (Dune Chronicles #1)"],
    "authors": ["Rick Riordan", "Rick Riordan, Someone Else", "Rick Riordan",
                "Stieg Larsson, Reg Keeland", "Jon Krakauer", "Frank Herbert"],
})


def test_marks_read_the_first_author_and_the_bracketed_series() -> None:
    marks = book_marks(BOOKS)
    assert marks.loc[2, "author"] == "Rick Riordan"
    assert marks.loc[1, "series"] == "Percy Jackson and the Olympians"
    assert marks.loc[4, "series"] == "Millennium"
    assert pd.isna(marks.loc[5, "series"])


def test_the_shared_share_by_hand() -> None:
    marks = book_marks(BOOKS)
    loved = top_rated(pd.DataFrame({"user_id": [7, 7, 8], "book_id": [1, 5, 6],
                                    "rating": [5, 5, 3]}))
    # Reader 7 loved a Riordan and a Krakauer: of [2, 3, 4, 6], 2 and 3 share the author
    # (2 the series too); reader 8 loved nothing at five stars and is left out.
    assert shared_share({7: [2, 3, 4, 6], 8: [1, 2]}, loved, marks) == pytest.approx(0.5)


def test_the_reader_whose_taste_shows_is_chosen() -> None:
    rows = []
    # Reader 1: five five-star books by five authors; reader 2: five five-star books, four
    # of them Riordan's; reader 3: too few ratings to be typical.
    for b in (1, 4, 5, 6, 3):
        rows.append((1, b, 5 if b != 3 else 4))
    rows += [(1, 2, 5)]
    rows += [(2, b, 5) for b in (1, 2, 3, 4, 5)] + [(2, 6, 3)]
    rows += [(3, 1, 5)]
    ratings = pd.DataFrame(rows, columns=["user_id", "book_id", "rating"])
    marks = book_marks(BOOKS)
    shares = repeated_share(top_rated(ratings), marks)
    assert shares[2] == pytest.approx(3 / 5)  # books 1, 2, 3 share Riordan
    assert shares[1] == pytest.approx(2 / 5)  # books 1 and 2
    assert showing_reader(ratings, marks) == 2
