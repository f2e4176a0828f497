"""Row slices of an uncompressed .npz equal the same rows of the whole array, for any range."""

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from models.npz import NpzReadError, read_header, read_headers, read_rows


@pytest.fixture(scope="module")
def arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {
        "ids": np.arange(101, 138, dtype=np.int64),
        "factors": rng.standard_normal((37, 5), dtype=np.float32),
        "bias": rng.standard_normal(37).astype(np.float16),
        "cube": rng.integers(0, 255, size=(37, 3, 2), dtype=np.uint8),
        "flags": rng.random(37) > 0.5,
    }


@pytest.fixture(scope="module")
def archive(arrays: dict[str, np.ndarray], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("npz") / "arrays.npz"
    np.savez(path, **arrays)
    return path


def test_headers_give_every_shape_and_dtype(archive: Path, arrays: dict[str, np.ndarray]
                                            ) -> None:
    headers = read_headers(archive)
    assert set(headers) == set(arrays)
    for name, array in arrays.items():
        assert headers[name].shape == array.shape
        assert headers[name].dtype == array.dtype
        assert read_header(archive, name) == headers[name]


@pytest.mark.parametrize("start, stop", [
    (0, 37),  # the whole array
    (0, 1), (5, 17), (36, 37),  # first row, a middle run, the last row
    (32, 37),  # a last shard shorter than the others
    (0, 0), (20, 20), (37, 37),  # empty ranges, including at the very end
])
def test_a_slice_equals_the_full_load(archive: Path, arrays: dict[str, np.ndarray],
                                      start: int, stop: int) -> None:
    for name, array in arrays.items():
        rows = read_rows(archive, name, start, stop)
        assert rows.dtype == array.dtype
        assert rows.shape == (stop - start, *array.shape[1:])
        np.testing.assert_array_equal(rows, array[start:stop])
        rows[:] = 0  # a writable copy, not a view of something shared


def test_slices_of_a_saved_sparse_matrix(tmp_path: Path) -> None:
    matrix = sp.random(50, 40, density=0.2, format="csr", dtype=np.float32, random_state=3)
    path = tmp_path / "seen.npz"
    sp.save_npz(path, matrix, compressed=False)
    np.testing.assert_array_equal(read_rows(path, "indptr", 10, 21), matrix.indptr[10:21])
    first, last = matrix.indptr[10], matrix.indptr[20]
    np.testing.assert_array_equal(read_rows(path, "indices", first, last),
                                  matrix.indices[first:last])
    np.testing.assert_array_equal(read_rows(path, "data", first, last), matrix.data[first:last])


@pytest.mark.parametrize("start, stop", [(-1, 3), (5, 4), (0, 38), (38, 38)])
def test_bounds_outside_the_array_are_refused(archive: Path, start: int, stop: int) -> None:
    with pytest.raises(NpzReadError, match=r"outside 'factors'.* has 37 rows"):
        read_rows(archive, "factors", start, stop)


def test_a_compressed_member_is_refused_with_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "compressed.npz"
    np.savez_compressed(path, factors=np.ones((4, 2)))
    with pytest.raises(NpzReadError, match=r"compressed.*np\.savez"):
        read_rows(path, "factors", 0, 2)
    with pytest.raises(NpzReadError, match="compressed"):
        read_headers(path)


def test_an_unknown_array_names_the_ones_there(archive: Path) -> None:
    with pytest.raises(NpzReadError, match=r"no array 'missing'.*bias, cube, factors"):
        read_rows(archive, "missing", 0, 1)


def test_arrays_without_contiguous_rows_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "odd.npz"
    np.savez(path, fortran=np.asfortranarray(np.ones((4, 3))), scalar=np.array(3.0))
    with pytest.raises(NpzReadError, match="Fortran order"):
        read_rows(path, "fortran", 0, 2)
    with pytest.raises(NpzReadError, match="scalar"):
        read_rows(path, "scalar", 0, 0)
