"""Numerical health: no infinite feature reaches a model, no probability that is none leaves it.

One check for the three places that see features and probabilities: train (the features files,
before the fit: cd4ml.engine), the bundle stage (the eval rows, through the pipeline's model and
the fresh bundle) and every scoring of raw rows (cd4ml.bundle.Scorer.score_table, which the
service and the batch stages call). A refusal names the first row, and the feature.

A NaN feature is no error: it is the features' missing value (an unknown age, a member never
seen), which every model kind takes (XGBoost's own missing, scikit-learn's forest, an imputer in
logreg). An infinity is: nothing makes one but an overflow or a division by zero, and no kind
scores it meaningfully. A probability must be a number in [0, 1]: NaN included, nothing else.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cd4ml.io import UserError

# Rows checked at once: a request is one block, a training part a few (bounded memory).
BLOCK_ROWS = 65_536


class Unhealthy(UserError):
    """A feature or a probability no model should see or give: the row, the feature (None: the
    probability) and the value, in one line."""

    def __init__(self, row: int, feature: str | None, value: float) -> None:
        self.row, self.feature, self.value = row, feature, value
        if feature is None:
            what = f"the model's probability is {value:.6g}, not a number in [0, 1]"
        else:
            what = f"feature {feature} is {value:g} (NaN is a missing value, infinity is not)"
        super().__init__(f"rows[{row}]: {what}")


def not_probabilities(p: np.ndarray) -> np.ndarray:
    """True where a prediction is NaN, infinite or outside [0, 1]."""
    return ~((p >= 0) & (p <= 1))


def infinite_feature(x: pd.DataFrame) -> tuple[int, str, float] | None:
    """The first row (then column) of `x` holding +-inf: its position, feature and value."""
    floats = x

    def block(start: int) -> np.ndarray:
        rows = floats if len(x) <= BLOCK_ROWS else floats.iloc[start : start + BLOCK_ROWS]
        return rows.to_numpy()

    for start in range(0, len(x), BLOCK_ROWS):
        values = block(start)  # all numbers (the common case): one array, no look at the dtypes
        if values.dtype.kind == "O" and floats is x:  # text or categories: the float columns
            floats = x[[name for name, t in x.dtypes.items() if t.kind == "f"]]
            values = block(start)
        if values.dtype.kind != "f":
            return None  # whole numbers or no numbers: never infinite
        bad = np.isinf(values)
        if bad.any():
            row, column = np.argwhere(bad)[0]
            return start + int(row), str(floats.columns[column]), float(values[row, column])
    return None


def check(x: pd.DataFrame | None = None, p: np.ndarray | None = None) -> None:
    """Refuse (Unhealthy, naming the first row) an infinite feature of `x`, then a prediction of
    `p` that is NaN, infinite or outside [0, 1]."""
    if x is not None:
        found = infinite_feature(x)
        if found is not None:
            raise Unhealthy(*found)
    if p is not None:
        p = np.asarray(p)
        bad = not_probabilities(p)
        if bad.any():
            row = int(np.argmax(bad))
            raise Unhealthy(row, None, float(p[row]))
