"""Item features: each family switchable, and absent tags simply mean no tag features."""

import numpy as np
import pandas as pd

from models.features import FeatureConfig, book_feature_lists, build_item_features
from models.interactions import IdMap

BOOKS = pd.DataFrame({
    "book_id": [1, 2, 3],
    "goodreads_book_id": [10, 20, 30],
    "authors": ["Harper Lee", "J.K. Rowling, Mary GrandPré", "Homer"],
    "original_publication_year": [1960.0, 1997.0, -720.0],
    "language_code": ["eng", "en-US", None],
})
TAGS = pd.DataFrame({"tag_id": [0, 1, 2], "tag_name": ["classics", "fantasy", "to-read"]})
BOOK_TAGS = pd.DataFrame({"goodreads_book_id": [10, 10, 20, 20, 30],
                          "tag_id": [0, 2, 1, 2, 0], "count": [50, 90, 70, 80, 40]})
IDS = IdMap(user_ids=np.array([1, 2]), book_ids=np.array([1, 2, 3]))


def test_feature_names_per_family() -> None:
    lists = book_feature_lists(BOOKS, BOOK_TAGS, TAGS, FeatureConfig(n_tags=2))
    assert lists[2] == ["author:J.K. Rowling", "author:Mary GrandPré", "decade:1990s",
                        "lang:eng", "tag:to-read"]
    assert lists[1][-2:] == ["tag:to-read", "tag:classics"]  # strongest first
    assert "decade:antiquity" in lists[3] and not any(f.startswith("lang:") for f in lists[3])
    # Only the 2 most frequent tags overall (to-read 170, classics 90) are kept.
    assert not any(f == "tag:fantasy" for names in lists.values() for f in names)


def test_families_switch_off_and_missing_tags_are_fine() -> None:
    no_tags = build_item_features(IDS, BOOKS, None, None, FeatureConfig())
    assert "tag" not in no_tags.families and no_tags.families["author"] == 4
    only_lang = build_item_features(IDS, BOOKS, BOOK_TAGS, TAGS, FeatureConfig(
        authors=False, tags=False, decade=False))
    assert set(only_lang.families) == {"lang"}
    assert build_item_features(IDS, BOOKS, BOOK_TAGS, TAGS, FeatureConfig(
        authors=False, tags=False, decade=False, language=False)) is None


def test_matrix_rows_follow_the_id_map_with_identity_features() -> None:
    features = build_item_features(IDS, BOOKS, BOOK_TAGS, TAGS, FeatureConfig())
    assert features.matrix.shape == (3, 3 + len(features.names))
    # LightFM normalises each row; the identity feature is the book's own column.
    assert np.allclose(features.matrix.sum(axis=1), 1.0)
    assert (features.matrix[:, :3].toarray() > 0).sum() == 3
