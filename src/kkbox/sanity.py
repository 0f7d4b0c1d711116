"""Sanity checks of a trained model: pure functions of arrays, each returning one Check.

A check has a name, the measured value, the threshold it is held to and whether it passed, so
the report reads the same for every check and a failing one can be named in one line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

log = logging.getLogger(__name__)

# Below this standard deviation the predictions count as constant.
MIN_STD = 1e-6


@dataclass
class Check:
    """One sanity check: measured value against a threshold, plus optional details."""

    name: str
    value: float | int
    threshold: float | int
    passed: bool
    why: str
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The report entry: value, threshold, passed and the details (the rule is in `why`:
        text would crowd `dvc metrics show`)."""
        value = self.value if np.isfinite(self.value) else None  # JSON has no inf / NaN
        return {
            "value": value,
            "threshold": self.threshold,
            "passed": self.passed,
            **self.details,
        }


def probabilities_valid(p: np.ndarray) -> Check:
    """Every prediction is a finite probability in [0, 1]."""
    p = np.asarray(p, dtype=float)
    bad = int((~np.isfinite(p) | (p < 0) | (p > 1)).sum())
    return Check(
        "probabilities_valid",
        bad,
        0,
        bad == 0,
        "rows whose prediction is NaN, infinite or outside [0, 1] must be 0",
        {"non_finite": int((~np.isfinite(p)).sum())},
    )


def one_prediction_per_row(n_predictions: int, n_rows: int) -> Check:
    """Exactly one prediction for each eval row (no row dropped or duplicated by a join)."""
    return Check(
        "one_prediction_per_row",
        int(n_predictions),
        int(n_rows),
        n_predictions == n_rows,
        "number of predictions must equal the eval rows",
    )


def not_constant(p: np.ndarray, min_std: float = MIN_STD) -> Check:
    """The predictions vary: their standard deviation is above `min_std`."""
    p = np.asarray(p, dtype=float)
    finite = p[np.isfinite(p)]
    std = float(finite.std()) if len(finite) else 0.0
    return Check(
        "not_constant",
        std,
        min_std,
        std > min_std,
        "standard deviation of the predictions must be above the threshold",
    )


def positive_rate(p: np.ndarray, threshold: float, train_rate: float, tolerance: float) -> Check:
    """Share predicted positive at `threshold` is within a relative `tolerance` of the
    training positive rate."""
    predicted = float((np.asarray(p, dtype=float) >= threshold).mean()) if len(p) else 0.0
    deviation = abs(predicted - train_rate) / train_rate if train_rate > 0 else float("inf")
    return Check(
        "positive_rate",
        deviation,
        tolerance,
        bool(deviation <= tolerance),
        "|predicted positive rate - training positive rate| / training positive rate "
        "must not exceed the threshold",
        {
            "predicted_positive_rate": predicted,
            "training_positive_rate": train_rate,
            "decision_threshold": threshold,
        },
    )


def cv_stable(
    fold_auc: list[float], max_deviation: float, details: dict[str, Any] | None = None
) -> Check:
    """No fold's AUC is further than `max_deviation` from the mean of the folds."""
    aucs = np.asarray(fold_auc, dtype=float)
    mean = float(aucs.mean())
    deviation = float(np.abs(aucs - mean).max())
    return Check(
        "cv_stable",
        deviation,
        max_deviation,
        bool(deviation <= max_deviation),
        "largest |fold ROC AUC - mean ROC AUC| must not exceed the threshold",
        # Keyed by fold number, not a list: `dvc metrics show` skips lists.
        {
            "fold_auc": {str(k): float(a) for k, a in enumerate(aucs, 1)},
            "mean_auc": mean,
            **(details or {}),
        },
    )


def subsample(n_rows: int, max_rows: int, seed: int) -> np.ndarray:
    """Sorted row positions of a deterministic sample of at most `max_rows` (time order kept)."""
    if n_rows <= max_rows:
        return np.arange(n_rows)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_rows, size=max_rows, replace=False))


def cross_validate(
    x: pd.DataFrame, y: np.ndarray, fit_predict: Callable[..., np.ndarray], folds: int, seed: int
) -> list[float]:
    """ROC AUC of each stratified fold; `fit_predict(x_train, y_train, x_test)` gives P(y=1)."""
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    aucs = []
    for k, (fit_idx, test_idx) in enumerate(splitter.split(x, y), start=1):
        p = fit_predict(x.iloc[fit_idx], y[fit_idx], x.iloc[test_idx])
        aucs.append(float(roc_auc_score(y[test_idx], p)))
        log.info(
            "fold %d/%d: %d fit rows, %d test rows, ROC AUC %.4f",
            k,
            folds,
            len(fit_idx),
            len(test_idx),
            aucs[-1],
        )
    return aucs


def report(checks: list[Check]) -> dict[str, Any]:
    """The sanity report: every check by name, and whether all of them passed."""
    return {
        "passed": all(c.passed for c in checks),
        "checks": {c.name: c.as_dict() for c in checks},
    }


def _num(value: float | int) -> str:
    return str(value) if isinstance(value, int) else f"{value:.4g}"


def failure_message(checks: list[Check]) -> str | None:
    """One line naming every failed check with its value and threshold; None if all passed."""
    failed = [c for c in checks if not c.passed]
    if not failed:
        return None
    parts = [
        f"{c.name} (value {_num(c.value)}, threshold {_num(c.threshold)}: {c.why})" for c in failed
    ]
    return f"sanity check failed: {'; '.join(parts)}"
