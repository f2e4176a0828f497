"""A saved bundle read in parts: sizes from headers, the book side, one shard of readers."""

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from models.bundle import ScoringBundle, bundle_sizes
from models.interactions import IdMap
from models.npz import NpzReadError
from models.recommender import FactorModel
from models.schema import TrainingError

READERS, BOOKS, DIMS = 45, 30, 4


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[ScoringBundle, Path]:
    rng = np.random.default_rng(11)
    seen = sp.random(READERS, BOOKS, density=0.15, format="csr", dtype=np.float32,
                     random_state=5)
    seen.data[:] = 1
    keep = np.ones(READERS, np.float32)
    keep[7] = 0  # a reader with no history
    seen = (sp.diags(keep) @ seen).tocsr()
    seen.eliminate_zeros()
    bundle = ScoringBundle(
        ids=IdMap(np.arange(1000, 1000 + 3 * READERS, 3), np.arange(1, BOOKS + 1)),
        factors=FactorModel(rng.standard_normal((READERS, DIMS), dtype=np.float32),
                            rng.standard_normal(READERS, dtype=np.float32),
                            rng.standard_normal((BOOKS, DIMS), dtype=np.float32),
                            rng.standard_normal(BOOKS, dtype=np.float32)),
        seen=seen, popular=rng.permutation(np.arange(1, BOOKS + 1)), meta={"run_id": "r1"})
    directory = tmp_path_factory.mktemp("bundle")
    bundle.save(directory)
    return bundle, directory


def test_sizes_come_from_the_headers(saved: tuple[ScoringBundle, Path]) -> None:
    assert bundle_sizes(saved[1]) == {"readers": READERS, "books": BOOKS, "factors": DIMS}


@pytest.mark.parametrize("start, stop", [(0, 16), (16, 32), (32, 45), (5, 9), (45, 45)])
def test_a_shard_holds_exactly_its_readers_rows(saved: tuple[ScoringBundle, Path],
                                                start: int, stop: int) -> None:
    whole, directory = saved
    shard = ScoringBundle.load_readers(directory, start, stop)
    np.testing.assert_array_equal(shard.ids.user_ids, whole.ids.user_ids[start:stop])
    np.testing.assert_array_equal(shard.factors.user_factors,
                                  whole.factors.user_factors[start:stop])
    np.testing.assert_array_equal(shard.factors.user_bias, whole.factors.user_bias[start:stop])
    assert shard.seen.dtype == np.float32
    assert (shard.seen != whole.seen[start:stop]).nnz == 0
    np.testing.assert_array_equal(shard.ids.book_ids, whole.ids.book_ids)
    np.testing.assert_array_equal(shard.factors.item_factors, whole.factors.item_factors)
    np.testing.assert_array_equal(shard.popular, whole.popular)
    assert shard.meta == {"run_id": "r1"}


def test_shards_share_one_book_side(saved: tuple[ScoringBundle, Path]) -> None:
    books = ScoringBundle.load_books(saved[1])
    assert books.ids.n_users == 0 and books.seen.shape == (0, BOOKS)
    shard = ScoringBundle.load_readers(saved[1], 0, 10, books=books)
    assert shard.factors.item_factors is books.factors.item_factors


def test_reader_bounds_outside_the_bundle_are_refused(saved: tuple[ScoringBundle, Path]
                                                      ) -> None:
    with pytest.raises(NpzReadError, match="outside"):
        ScoringBundle.load_readers(saved[1], 40, 46)


def test_a_directory_without_a_bundle_says_so(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="holds no scoring bundle"):
        bundle_sizes(tmp_path)
    with pytest.raises(TrainingError, match="holds no scoring bundle"):
        ScoringBundle.load_readers(tmp_path, 0, 1)


def test_a_broken_bundle_fails_before_scoring_with_what_is_wrong(
        saved: tuple[ScoringBundle, Path], tmp_path: Path) -> None:
    import shutil

    bundle, directory = saved
    for name in ("factors.npz", "seen.npz", "bundle.json"):
        shutil.copy(directory / name, tmp_path / name)
    # A seen matrix of another model: one reader fewer.
    sp.save_npz(tmp_path / "seen.npz", bundle.seen[:-1], compressed=False)
    with pytest.raises(TrainingError, match=r"does not agree with itself: seen.npz is "
                                            rf"{READERS - 1} x {BOOKS}, not {READERS} x {BOOKS}"):
        bundle_sizes(tmp_path)
    (tmp_path / "seen.npz").unlink()
    with pytest.raises(TrainingError, match="holds no readable scoring bundle"):
        bundle_sizes(tmp_path)
    (tmp_path / "factors.npz").write_bytes(b"not a zip archive")
    with pytest.raises(TrainingError, match="holds no readable scoring bundle"):
        bundle_sizes(tmp_path)
    arrays = dict(np.load(directory / "factors.npz"))
    del arrays["popular"]
    np.savez(tmp_path / "factors.npz", **arrays)
    shutil.copy(directory / "seen.npz", tmp_path / "seen.npz")
    with pytest.raises(TrainingError, match="lacks popular: not a scoring bundle"):
        bundle_sizes(tmp_path)
