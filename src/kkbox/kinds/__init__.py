"""The model kinds of the problem, one module each: its settings (train.<name> in params.yaml),
building, fitting, saving in the library's own format, loading with a trust check, scoring and
importances. A new kind is a new module here that defines KIND, plus its section in params.yaml
(cd4ml.problem.discover_kinds finds it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cd4ml.io import UserError


def normalised(values: Any, names: list[str]) -> dict[str, float]:
    """Importances as shares of their sum, by feature name."""
    values = np.abs(np.asarray(values, dtype=float))
    total = values.sum() or 1.0
    return {n: float(v / total) for n, v in zip(names, values, strict=True)}


class Skops:
    """What the scikit-learn kinds share: they do not stop early, so they learn from the valid
    rows too; their file is skops' (a zip of JSON, never pickle), and loading it accepts only
    the `trusted` types (skops.io.get_untrusted_types of a file of the kind) and an instance of
    `expected()`. A kind adds its name, Settings, build and importances."""

    file = "model.skops"
    library = "skops.io"
    trusted: tuple[str, ...] = ()

    def expected(self) -> type:
        raise NotImplementedError

    def fit(
        self, model: Any, x: pd.DataFrame, y: np.ndarray, valid: tuple[pd.DataFrame, np.ndarray]
    ) -> dict[str, Any]:
        model.fit(pd.concat([x, valid[0]], ignore_index=True), np.concatenate([y, valid[1]]))
        return {}

    def save(self, model: Any, path: Path) -> None:
        import skops.io

        skops.io.dump(model, path)

    def load(self, path: Path) -> Any:
        """The model of a skops file, refused before it is loaded when it needs a type outside
        `trusted`, and after when it holds anything but an `expected()`."""
        import skops.io

        try:
            untrusted = skops.io.get_untrusted_types(file=path)
        except Exception as err:  # skops raises zip, JSON and key errors for a foreign file
            raise UserError(f"{path}: not a skops file ({type(err).__name__})") from None
        refused = sorted(set(untrusted) - set(self.trusted))
        if refused:
            raise UserError(f"{path}: holds types this model kind never needs: {refused}")
        model = skops.io.load(path, trusted=list(self.trusted))
        expected = self.expected()
        if not isinstance(model, expected):
            raise UserError(f"{path}: holds a {type(model).__name__}, not a {expected.__name__}")
        return model

    def predict(self, model: Any, x: pd.DataFrame) -> np.ndarray:
        return model.predict_proba(x)[:, 1]
