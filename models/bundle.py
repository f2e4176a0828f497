"""What scoring needs from a trained model, saved as plain arrays beside the MLflow model.

A bundle holds the id mappings, the combined reader/book factors and biases, every reader's
known interactions (to exclude them) and the popularity order (the fallback list). It is
written with numpy/scipy only, so loading it needs neither LightFM nor pickle.

Both archives are stored uncompressed, so a scoring process can read the book side alone
(``load_books``) and one shard of readers at a time (``load_readers``): its memory then
follows the shard size, not the number of readers.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from models.interactions import IdMap
from models.npz import NpzReadError, read_headers, read_rows
from models.recommender import FactorModel
from models.schema import TrainingError

ARRAYS_FILE = "factors.npz"
SEEN_FILE = "seen.npz"
META_FILE = "bundle.json"
# The reader side: row i of each is reader i; every other array of ARRAYS_FILE is the book side.
READER_ARRAYS = ("user_ids", "user_factors", "user_bias")


# Bundle meta: how many leading book-factor columns are the fitted model's (similar books
# read only those; a taste side rides in the columns after them).
SIMILAR_COLUMNS = "similar_columns"
BOOK_ARRAYS = ("book_ids", "item_factors", "item_bias", "popular")


def bundle_sizes(directory: Path) -> dict[str, int]:
    """Readers, books and factors of a saved bundle, from its array headers alone.

    Checks what the shards will read (every array there, reader and book rows agreeing
    with the ids, the seen matrix readers × books), so a broken bundle fails before a
    version is started, with a TrainingError naming the file.
    """
    path = _arrays_path(directory)
    try:
        headers = read_headers(path)
        seen = tuple(int(d) for d in read_rows(directory / SEEN_FILE, "shape", 0, 2))
    except (OSError, ValueError, zipfile.BadZipFile) as exc:  # NpzReadError is a ValueError
        raise TrainingError(f"{directory} holds no readable scoring bundle: {exc}") from exc
    missing = [name for name in (*READER_ARRAYS, *BOOK_ARRAYS) if name not in headers]
    if missing:
        raise TrainingError(f"{path} lacks {', '.join(missing)}: not a scoring bundle")
    readers, books = headers["user_ids"].shape[0], headers["book_ids"].shape[0]
    rows = {"user_factors": readers, "user_bias": readers, "item_factors": books,
            "item_bias": books}
    wrong = [f"{name} has {headers[name].shape[0]} rows, not {n}"
             for name, n in rows.items() if headers[name].shape[0] != n]
    if seen != (readers, books):
        wrong.append(f"{SEEN_FILE} is {seen[0]} x {seen[1]}, not {readers} x {books}")
    if wrong:
        raise TrainingError(f"the scoring bundle in {directory} does not agree with itself: "
                            + "; ".join(wrong))
    return {"readers": readers, "books": books, "factors": headers["item_factors"].shape[1]}


def _arrays_path(directory: Path) -> Path:
    path = directory / ARRAYS_FILE
    if not path.exists():
        raise TrainingError(f"{directory} holds no scoring bundle ({ARRAYS_FILE} missing)")
    return path


def _read_meta(directory: Path) -> dict[str, object]:
    meta_path = directory / META_FILE
    return json.loads(meta_path.read_text()) if meta_path.exists() else {}


def _seen_rows(path: Path, start: int, stop: int) -> sp.csr_matrix:
    """Rows [start, stop) of a CSR matrix saved by sp.save_npz(compressed=False)."""
    with np.load(path, allow_pickle=False) as arrays:
        kind = arrays["format"].item()
        shape = tuple(int(d) for d in arrays["shape"])
    kind = kind.decode() if isinstance(kind, bytes) else str(kind)
    if kind != "csr":
        raise NpzReadError(f"{path} holds a {kind} matrix; reader rows are read from CSR only")
    if not 0 <= start <= stop <= shape[0]:
        raise NpzReadError(f"reader rows [{start}, {stop}) are outside {path}, which has "
                           f"{shape[0]} rows: need 0 <= start <= stop <= {shape[0]}")
    indptr = read_rows(path, "indptr", start, stop + 1)
    first, last = int(indptr[0]), int(indptr[-1])
    indices = read_rows(path, "indices", first, last)
    data = read_rows(path, "data", first, last).astype(np.float32, copy=False)
    return sp.csr_matrix((data, indices, indptr - first), shape=(stop - start, shape[1]))


@dataclass
class ScoringBundle:
    """Everything batch scoring reads; row i of every reader array is ids.user_ids[i]."""

    ids: IdMap
    factors: FactorModel
    seen: sp.csr_matrix  # float32 [n_users, n_books]: interactions excluded from rankings
    popular: np.ndarray  # int64 dataset book ids, most popular first
    meta: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n_users, n_books = self.ids.n_users, self.ids.n_books
        if self.factors.user_factors.shape[0] != n_users:
            raise TrainingError(
                f"bundle has {n_users} readers but {self.factors.user_factors.shape[0]} "
                "reader factor rows"
            )
        if self.factors.item_factors.shape[0] != n_books:
            raise TrainingError(
                f"bundle has {n_books} books but {self.factors.item_factors.shape[0]} "
                "book factor rows"
            )
        if self.seen.shape != (n_users, n_books):
            raise TrainingError(f"seen matrix shape {self.seen.shape} != {(n_users, n_books)}")

    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        np.savez(
            directory / ARRAYS_FILE,
            user_ids=self.ids.user_ids,
            book_ids=self.ids.book_ids,
            user_factors=self.factors.user_factors,
            user_bias=self.factors.user_bias,
            item_factors=self.factors.item_factors,
            item_bias=self.factors.item_bias,
            popular=self.popular,
        )
        sp.save_npz(directory / SEEN_FILE, self.seen.tocsr(), compressed=False)
        (directory / META_FILE).write_text(json.dumps(self.meta, indent=2, default=str))
        return directory

    @classmethod
    def load(cls, directory: Path) -> ScoringBundle:
        """Every reader and every book (memory grows with readers: see ``load_readers``)."""
        path = _arrays_path(directory)
        with np.load(path, allow_pickle=False) as arrays:
            ids = IdMap(user_ids=arrays["user_ids"], book_ids=arrays["book_ids"])
            factors = FactorModel(
                user_factors=arrays["user_factors"],
                user_bias=arrays["user_bias"],
                item_factors=arrays["item_factors"],
                item_bias=arrays["item_bias"],
            )
            popular = arrays["popular"]
        seen = sp.load_npz(directory / SEEN_FILE).tocsr().astype(np.float32)
        return cls(ids=ids, factors=factors, seen=seen, popular=popular,
                   meta=_read_meta(directory))

    @classmethod
    def load_books(cls, directory: Path) -> ScoringBundle:
        """The book side alone: book ids, factors, biases and popularity, and no readers.

        Enough for similar books and the popular list, and the part every reader shard
        shares (``load_readers(..., books=...)``).
        """
        with np.load(_arrays_path(directory), allow_pickle=False) as arrays:
            # NpzFile reads a member only when it is asked for: the reader arrays stay on disk.
            book_ids, popular = arrays["book_ids"], arrays["popular"]
            item_factors, item_bias = arrays["item_factors"], arrays["item_bias"]
        dims = item_factors.shape[1]
        return cls(
            ids=IdMap(user_ids=np.zeros(0, np.int64), book_ids=book_ids),
            factors=FactorModel(user_factors=np.zeros((0, dims), item_factors.dtype),
                                user_bias=np.zeros(0, item_bias.dtype),
                                item_factors=item_factors, item_bias=item_bias),
            seen=sp.csr_matrix((0, len(book_ids)), dtype=np.float32),
            popular=popular, meta=_read_meta(directory))

    @classmethod
    def load_readers(cls, directory: Path, start: int, stop: int,
                     books: ScoringBundle | None = None) -> ScoringBundle:
        """Reader rows [start, stop) with the whole book side; row 0 is reader ``start``.

        Reads only those readers' ids, factors, biases and seen rows from disk. ``books``
        (from ``load_books`` of the same directory) supplies the book side, shared rather
        than read again.
        """
        path = _arrays_path(directory)
        books = books if books is not None else cls.load_books(directory)
        user_ids, user_factors, user_bias = (read_rows(path, name, start, stop)
                                             for name in READER_ARRAYS)
        f = books.factors
        return cls(
            ids=IdMap(user_ids=user_ids, book_ids=books.ids.book_ids),
            factors=FactorModel(user_factors=user_factors, user_bias=user_bias,
                                item_factors=f.item_factors, item_bias=f.item_bias),
            seen=_seen_rows(directory / SEEN_FILE, start, stop),
            popular=books.popular, meta=books.meta)

    def factors_for(self, ids: IdMap) -> FactorModel:
        """This model's factors re-indexed to another split's ids (to compare on its test).

        Readers the model never saw get zero vectors (ranked by book bias alone); books it
        never saw get a bias so low they are never ranked.
        """
        f = self.factors
        out_users = np.zeros((ids.n_users, f.user_factors.shape[1]), np.float32)
        out_user_bias = np.zeros(ids.n_users, np.float32)
        pos = np.searchsorted(self.ids.user_ids, ids.user_ids)
        pos = np.minimum(pos, self.ids.n_users - 1)
        known = self.ids.user_ids[pos] == ids.user_ids
        out_users[known] = f.user_factors[pos[known]]
        out_user_bias[known] = f.user_bias[pos[known]]
        out_items = np.zeros((ids.n_books, f.item_factors.shape[1]), np.float32)
        out_item_bias = np.full(ids.n_books, -1e9, np.float32)
        pos = np.minimum(np.searchsorted(self.ids.book_ids, ids.book_ids), self.ids.n_books - 1)
        known = self.ids.book_ids[pos] == ids.book_ids
        out_items[known] = f.item_factors[pos[known]]
        out_item_bias[known] = f.item_bias[pos[known]]
        return FactorModel(out_users, out_user_bias, out_items, out_item_bias)
