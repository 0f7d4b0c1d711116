"""Model kind `logreg`: scikit-learn's logistic regression on the features imputed (median) and
standardised, saved through skops (only the types listed here load). The simple baseline: what a
model of trees must beat."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import Field

from cd4ml.params import Section
from kkbox.kinds import Skops, normalised


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


class LogReg(Skops):
    """The kind (see cd4ml.problem.ModelKind); it learns from the valid rows too."""

    name = "logreg"
    Settings = Settings
    trusted = TRUSTED

    def expected(self) -> type:
        from sklearn.pipeline import Pipeline

        return Pipeline

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
        super().fit(model, x, y, valid)
        return {"iterations": int(model[-1].n_iter_[0])}

    def importances(self, model: Any, names: list[str]) -> dict[str, float]:
        """|coefficient| of each standardised feature, normalised to sum 1."""
        return normalised(model[-1].coef_[0], names)


KIND = LogReg()
