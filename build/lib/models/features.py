"""Item features for LightFM: authors, frequent tags, publication decade and language.

Each family can be switched off; with every family off (or no metadata) the model falls back
to pure collaborative filtering on identity features. The LightFM ``Dataset`` owns the id
and feature mappings, and its reader/book order is checked against the split's IdMap so
matrices line up row for row.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from lightfm.data import Dataset

from models.interactions import IdMap
from models.schema import BOOK_ID, GOODREADS_BOOK_ID, TAG_COUNT, TAG_ID, TAG_NAME, TrainingError


@dataclass(frozen=True)
class FeatureConfig:
    """Which feature families describe a book, and how many tags to keep."""

    authors: bool = True
    tags: bool = True
    decade: bool = True
    language: bool = True
    n_tags: int = 300  # most frequent tags over the catalogue
    tags_per_book: int = 10  # a book's own strongest tags among those

    def any(self) -> bool:
        return self.authors or self.tags or self.decade or self.language

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class ItemFeatures:
    """Feature matrix [n_books, n_features] (identity + families, rows normalised)."""

    matrix: sp.csr_matrix
    names: list[str]
    families: dict[str, int]  # family → number of features

    @property
    def n_features(self) -> int:
        return self.matrix.shape[1]


def book_feature_lists(
    books: pd.DataFrame,
    book_tags: pd.DataFrame | None,
    tags: pd.DataFrame | None,
    config: FeatureConfig,
) -> dict[int, list[str]]:
    """book_id → its feature names, e.g. ['author:Harper Lee', 'decade:1960s', ...]."""
    features: dict[int, list[str]] = {int(b): [] for b in books[BOOK_ID]}
    if config.authors and "authors" in books:
        for book_id, authors in zip(books[BOOK_ID], books["authors"], strict=True):
            if isinstance(authors, str):
                names = [a.strip() for a in authors.split(",") if a.strip()]
                features[int(book_id)].extend(f"author:{a}" for a in names[:3])
    if config.decade and "original_publication_year" in books:
        years = pd.to_numeric(books["original_publication_year"], errors="coerce")
        for book_id, year in zip(books[BOOK_ID], years, strict=True):
            if np.isfinite(year):
                # Decades matter for modern books; older ones share coarse buckets.
                label = (f"{int(year // 10 * 10)}s" if year >= 1900
                         else "before-1900" if year >= 0 else "antiquity")
                features[int(book_id)].append(f"decade:{label}")
    if config.language and "language_code" in books:
        for book_id, lang in zip(books[BOOK_ID], books["language_code"], strict=True):
            if isinstance(lang, str) and lang:
                # en-US / en-GB / eng are one language for a reader.
                base = lang.split("-")[0].lower()
                features[int(book_id)].append(f"lang:{'eng' if base == 'en' else base}")
    if config.tags and book_tags is not None and tags is not None and not book_tags.empty:
        for book_id, names in _top_tags(books, book_tags, tags, config).items():
            features[book_id].extend(f"tag:{n}" for n in names)
    return features


def _top_tags(
    books: pd.DataFrame, book_tags: pd.DataFrame, tags: pd.DataFrame, config: FeatureConfig
) -> dict[int, list[str]]:
    """Each book's strongest tags among the catalogue's `n_tags` most frequent ones."""
    linked = book_tags.merge(books[[BOOK_ID, GOODREADS_BOOK_ID]], on=GOODREADS_BOOK_ID)
    linked = linked[linked[TAG_COUNT] > 0]
    frequent = linked.groupby(TAG_ID)[TAG_COUNT].sum().nlargest(config.n_tags).index
    linked = linked[linked[TAG_ID].isin(frequent)]
    linked = linked.sort_values([BOOK_ID, TAG_COUNT], ascending=[True, False])
    linked = linked.groupby(BOOK_ID).head(config.tags_per_book)
    names = tags.set_index(TAG_ID)[TAG_NAME]
    linked = linked.assign(name=linked[TAG_ID].map(names).fillna(linked[TAG_ID].astype(str)))
    return {int(b): list(group) for b, group in linked.groupby(BOOK_ID)["name"]}


def build_item_features(
    ids: IdMap,
    books: pd.DataFrame,
    book_tags: pd.DataFrame | None,
    tags: pd.DataFrame | None,
    config: FeatureConfig,
) -> ItemFeatures | None:
    """LightFM item features for the catalogue of `ids`; None when every family is off."""
    if not config.any():
        return None
    per_book = book_feature_lists(books, book_tags, tags, config)
    all_names = sorted({name for names in per_book.values() for name in names})
    if not all_names:
        return None
    dataset = Dataset()
    dataset.fit(users=ids.user_ids.tolist(), items=ids.book_ids.tolist(),
                item_features=all_names)
    _, _, item_map, _ = dataset.mapping()
    order = np.array([item_map[int(b)] for b in ids.book_ids])
    if not np.array_equal(order, np.arange(ids.n_books)):
        raise TrainingError("LightFM's book order differs from the split's; cannot align")
    matrix = dataset.build_item_features(
        (int(b), per_book.get(int(b), [])) for b in ids.book_ids
    ).tocsr().astype(np.float32)
    families: dict[str, int] = {}
    for name in all_names:
        family = name.split(":", 1)[0]
        families[family] = families.get(family, 0) + 1
    return ItemFeatures(matrix=matrix, names=all_names, families=families)
