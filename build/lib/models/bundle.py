"""What scoring needs from a trained model, saved as plain arrays beside the MLflow model.

A bundle holds the id mappings, the combined reader/book factors and biases, every reader's
known interactions (to exclude them) and the popularity order (the fallback list). It is
written with numpy/scipy only, so loading it needs neither LightFM nor pickle.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from models.interactions import IdMap
from models.recommender import FactorModel
from models.schema import TrainingError

ARRAYS_FILE = "factors.npz"
SEEN_FILE = "seen.npz"
META_FILE = "bundle.json"


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
        path = directory / ARRAYS_FILE
        if not path.exists():
            raise TrainingError(f"{directory} holds no scoring bundle ({ARRAYS_FILE} missing)")
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
        meta_path = directory / META_FILE
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        return cls(ids=ids, factors=factors, seen=seen, popular=popular, meta=meta)

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
