"""The MLflow pyfunc model (logged as models-from-code): top-k books for reader ids.

Loaded by alias from any process, e.g.
``mlflow.pyfunc.load_model("models:/goodbooks-lightfm@champion").predict(
pd.DataFrame({"user_id": [1, 2]}), params={"k": 5})``. Unknown readers get the popular list.
"""

from __future__ import annotations

from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.models import set_model

from models.bundle import ScoringBundle
from models.scoring import score_readers


class BookRecommenderModel(mlflow.pyfunc.PythonModel):
    """Ranks the whole catalogue for each reader from the bundled factors."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        self.bundle = ScoringBundle.load(Path(context.artifacts["bundle"]))

    def predict(
        self,
        context: mlflow.pyfunc.PythonModelContext,
        model_input: pd.DataFrame,
        params: dict | None = None,
    ) -> pd.DataFrame:
        k = int((params or {}).get("k", 10))
        user_ids = np.asarray(model_input["user_id"], dtype=np.int64)
        known_ids = self.bundle.ids.user_ids
        pos = np.searchsorted(known_ids, user_ids)
        pos_clipped = np.minimum(pos, len(known_ids) - 1)
        known = known_ids[pos_clipped] == user_ids
        lists: list[list[int]] = []
        for _user_id, row, is_known in zip(user_ids, pos_clipped, known, strict=True):
            if is_known:
                _, books = score_readers(self.bundle, int(row), int(row) + 1, k)
                lists.append([int(b) for b in books[0] if b >= 0])
            else:
                lists.append([int(b) for b in self.bundle.popular[:k]])
        return pd.DataFrame({"user_id": user_ids, "book_ids": lists})


set_model(BookRecommenderModel())
