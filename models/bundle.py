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
