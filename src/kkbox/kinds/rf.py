"""Model kind `rf`: scikit-learn's random forest, saved through skops (which loads only the
types listed here, never pickle)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, Field

from cd4ml.params import Section
from kkbox.kinds import Skops, normalised


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


class RF(Skops):
    """The kind (see cd4ml.problem.ModelKind); it learns from the valid rows too."""

    name = "rf"
    Settings = Settings
    trusted = TRUSTED

    def expected(self) -> type:
        from sklearn.ensemble import RandomForestClassifier

        return RandomForestClassifier

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

    def importances(self, model: Any, names: list[str]) -> dict[str, float]:
        """Impurity importances, normalised to sum 1."""
        return normalised(model.feature_importances_, names)


KIND = RF()
