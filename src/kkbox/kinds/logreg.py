"""Model kind `logreg`: scikit-learn's logistic regression on the features imputed (median) and
standardised, saved through skops (only the types listed here load). The simple baseline: what a
model of trees must beat."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import Field

from cd4ml.params import Section
from kkbox.kinds import normalised, skops_load


class Settings(Section):
    """train.logreg."""

    C: Annotated[float, Field(gt=0)]  # inverse L2 strength
    max_iter: Annotated[int, Field(ge=1)]


TRUSTED = (
    "numpy.dtype",
    "sklearn.impute._base.SimpleImputer",
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.pipeline.Pipeline",
    "sklearn.preprocessing._data.StandardScaler",
)


class LogReg:
    """The kind (see cd4ml.problem.ModelKind)."""

    name = "logreg"
    file = "model.skops"
    library = "skops.io"
    Settings = Settings

    def build(self, settings: Settings, seed: int) -> Any:
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(
            SimpleImputer(strategy="median", keep_empty_features=True),
            StandardScaler(),
            LogisticRegression(C=settings.C, max_iter=settings.max_iter, random_state=seed),
        )

    def fit(
        self, model: Any, x: pd.DataFrame, y: np.ndarray, valid: tuple[pd.DataFrame, np.ndarray]
    ) -> dict[str, Any]:
        """It does not stop early: it learns from the valid rows too."""
        model.fit(pd.concat([x, valid[0]], ignore_index=True), np.concatenate([y, valid[1]]))
        return {"iterations": int(model[-1].n_iter_[0])}

    def save(self, model: Any, path: Path) -> None:
        import skops.io

        skops.io.dump(model, path)

    def load(self, path: Path) -> Any:
        from sklearn.pipeline import Pipeline

        return skops_load(path, TRUSTED, Pipeline)

    def predict(self, model: Any, x: pd.DataFrame) -> np.ndarray:
        return model.predict_proba(x)[:, 1]

    def importances(self, model: Any, names: list[str]) -> dict[str, float]:
        """|coefficient| of each standardised feature, normalised to sum 1."""
        return normalised(model[-1].coef_[0], names)


KIND = LogReg()
