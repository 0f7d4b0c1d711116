"""Model kind `rf`: scikit-learn's random forest, saved through skops (which loads only the
types listed here, never pickle)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import AfterValidator, Field

from cd4ml.params import Section
from kkbox.kinds import normalised, skops_load


def _not_zero(value: int) -> int:
    if value == 0:
        raise ValueError("0 is no number of jobs")
    return value


class Settings(Section):
    """train.rf."""

    n_estimators: Annotated[int, Field(ge=1)]
    max_depth: Annotated[int, Field(ge=1)]
    min_samples_leaf: Annotated[int, Field(ge=1)]
    max_features: Annotated[float, Field(gt=0, le=1)]
    max_samples: Annotated[float, Field(gt=0, le=1)]  # share of rows each tree sees
    n_jobs: Annotated[
        int, Field(ge=-1, json_schema_extra={"allowed": ">= -1, not 0"}), AfterValidator(_not_zero)
    ]


# What a forest's file may hold beyond skops' defaults (skops.io.get_untrusted_types of one).
TRUSTED = (
    "numpy.dtype",
    "sklearn.ensemble._forest.RandomForestClassifier",
    "sklearn.tree._classes.DecisionTreeClassifier",
    "sklearn.tree._tree.Tree",
)


class RF:
    """The kind (see cd4ml.problem.ModelKind)."""

    name = "rf"
    file = "model.skops"
    library = "skops.io"
    Settings = Settings

    def build(self, settings: Settings, seed: int) -> Any:
        from sklearn.ensemble import RandomForestClassifier

        return RandomForestClassifier(
            n_estimators=settings.n_estimators,
            max_depth=settings.max_depth,
            min_samples_leaf=settings.min_samples_leaf,
            max_features=settings.max_features,
            max_samples=settings.max_samples,
            n_jobs=settings.n_jobs,
            random_state=seed,
        )

    def fit(
        self, model: Any, x: pd.DataFrame, y: np.ndarray, valid: tuple[pd.DataFrame, np.ndarray]
    ) -> dict[str, Any]:
        """A forest does not stop early: it learns from the valid rows too."""
        model.fit(pd.concat([x, valid[0]], ignore_index=True), np.concatenate([y, valid[1]]))
        return {}

    def save(self, model: Any, path: Path) -> None:
        import skops.io

        skops.io.dump(model, path)

    def load(self, path: Path) -> Any:
        from sklearn.ensemble import RandomForestClassifier

        return skops_load(path, TRUSTED, RandomForestClassifier)

    def predict(self, model: Any, x: pd.DataFrame) -> np.ndarray:
        return model.predict_proba(x)[:, 1]

    def importances(self, model: Any, names: list[str]) -> dict[str, float]:
        """Impurity importances, normalised to sum 1."""
        return normalised(model.feature_importances_, names)


KIND = RF()
