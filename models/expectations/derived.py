"""Derived columns and tables: what GX checks where a rule spans columns, rows or tables.

Vectorised pandas and numpy. Each function returns a boolean column (True where a row meets
the rule) or a small aggregate table that a GX expectation then checks, so every result is
still a GX validation result and shows in Data Docs.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from models.schema import RATING, USER_ID


def whole_or_null(values: pd.Series) -> pd.Series:
    """True where the value is null or a finite whole number (text and fractions are False)."""
    if pd.api.types.is_integer_dtype(values.dtype):
        return pd.Series(True, index=values.index)
    numeric = pd.to_numeric(values, errors="coerce").astype("float64")
    whole = np.isfinite(numeric) & (numeric == np.floor(numeric))
    return values.isna() | whole


def number_or_null(values: pd.Series) -> pd.Series:
    """True where the value is null or a number."""
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values):
        return pd.Series(True, index=values.index)
    return values.isna() | pd.to_numeric(values, errors="coerce").notna()


def repeated_pairs(first: pd.Series, second: pd.Series) -> pd.Series:
    """True on every occurrence of a (first, second) pair after its first one."""
    a = first.to_numpy(dtype=np.int64)
    b = second.to_numpy(dtype=np.int64)
    repeat = np.zeros(len(a), dtype=bool)
    if len(a) < 2:
        return pd.Series(repeat, index=first.index)
    a_low, b_low = int(a.min()), int(b.min())
    a_span, b_span = int(a.max()) - a_low + 1, int(b.max()) - b_low + 1
    if a_span * b_span >= 2**62:
        # Ids too sparse to pack into one int64 key: let pandas hash the pairs.
        both = pd.DataFrame({"a": a, "b": b})
        return pd.Series(both.duplicated(keep="first").to_numpy(), index=first.index)
    # One int64 key per pair and a sort: several times faster than hashing 6M pairs.
    key = (a - a_low) * b_span + (b - b_low)
    ordered = np.sort(key)
    repeated_keys = ordered[1:][ordered[1:] == ordered[:-1]]
    if repeated_keys.size:
        suspects = np.isin(key, repeated_keys)
        repeat[suspects] = pd.Series(key[suspects]).duplicated(keep="first").to_numpy()
    return pd.Series(repeat, index=first.index)


def ratings_per_reader(ratings: pd.DataFrame) -> pd.DataFrame:
    """One row per reader: user_id, ratings."""
    counts = ratings[USER_ID].value_counts(sort=False).sort_index()
    return pd.DataFrame({USER_ID: counts.index.to_numpy(), "ratings": counts.to_numpy()})


def rating_shares(ratings: pd.Series, bands: Mapping[int, tuple[float, float]],
                  flag: str) -> pd.DataFrame:
    """One row per banded rating value: share, band, and in column `flag` whether it fits."""
    shares = ratings.value_counts(normalize=True)
    values = sorted(bands)
    share = np.array([float(shares.get(v, 0.0)) for v in values])
    low = np.array([bands[v][0] for v in values])
    high = np.array([bands[v][1] for v in values])
    return pd.DataFrame({
        RATING: values,
        "share": share.round(4),
        "band_low": low,
        "band_high": high,
        flag: (share >= low) & (share <= high),
    })
