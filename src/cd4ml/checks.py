"""Sanity checks of a trained model: functions of arrays, each returning one Check, and the
cross-validation of a fresh model.

A check has a name, the measured value, the threshold it is held to and whether it passed, so
the report reads the same for every check and a failing one can be named in one line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import Field, model_validator
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from cd4ml import health, model
from cd4ml.params import Fraction, Section, Seed
from cd4ml.problem import ModelKind
from cd4ml.split import early_stopping_start

log = logging.getLogger(__name__)

# Below this standard deviation the predictions count as constant.
MIN_STD = 1e-6


class Sanity(Section):
    """Stage sanity: the checks a model must pass before it is released."""

    calibration_tolerance: Fraction  # |mean prediction - eval positive rate|, absolute
    min_roc_auc: Fraction  # eval ROC AUC: shuffled predictions give ~0.5
    cv_folds: Annotated[int, Field(ge=2, le=100)]
    cv_max_deviation: Fraction  # no fold's ROC AUC further than this from the folds' mean
    cv_max_rows: Annotated[int, Field(ge=20)]  # CV on a fixed sample of the training rows
    seed: Seed

    @model_validator(mode="after")
    def _enough_rows(self) -> Sanity:
        if self.cv_max_rows < 10 * self.cv_folds:
            raise ValueError(
                f"sanity.cv_max_rows={self.cv_max_rows} is too small for "
                f"sanity.cv_folds={self.cv_folds}; use at least {10 * self.cv_folds}"
            )
        return self


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
        return {
            "value": _json_number(self.value),
            "threshold": self.threshold,
            "passed": self.passed,
            **{k: _json_number(v) for k, v in self.details.items()},
        }


def _json_number(value: Any) -> Any:
    """None for an infinite or NaN number (JSON has neither); anything else as it is."""
    if isinstance(value, float | int) and not isinstance(value, bool) and not np.isfinite(value):
        return None
    return value


def probabilities_valid(p: np.ndarray) -> Check:
    """Every prediction is a finite probability in [0, 1]."""
    p = np.asarray(p, dtype=float)
    bad = int(health.not_probabilities(p).sum())
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


def calibration(
    p: np.ndarray,
    y: np.ndarray,
    tolerance: float,
    decision_threshold: float,
    details: dict[str, Any] | None = None,
) -> Check:
    """The mean prediction is within `tolerance` (absolute) of the observed positive rate.

    The share predicted positive at `decision_threshold` is in the details for information
    only: a well-calibrated model on 75 % positives puts far more than 75 % of rows above 0.5."""
    p = np.asarray(p, dtype=float)
    y = np.asarray(y, dtype=float)
    mean = float(p.mean()) if len(p) else float("nan")
    observed = float(y.mean()) if len(y) else float("nan")
    gap = abs(mean - observed)
    return Check(
        "calibration",
        gap if np.isfinite(gap) else float("inf"),
        tolerance,
        bool(gap <= tolerance),
        "|mean prediction - observed positive rate| on the eval rows must not exceed the "
        "threshold",
        {
            "mean_prediction": mean,
            "observed_positive_rate": observed,
            "predicted_positive_rate": float((p >= decision_threshold).mean()) if len(p) else 0.0,
            "decision_threshold": decision_threshold,
            **(details or {}),
        },
    )


def roc_auc(p: np.ndarray, y: np.ndarray, min_auc: float) -> Check:
    """The predictions rank the positives above the negatives: eval ROC AUC >= `min_auc`."""
    p = np.asarray(p, dtype=float)
    y = np.asarray(y)
    # Undefined with one class or non-finite predictions (probabilities_valid names those).
    defined = len(np.unique(y)) == 2 and bool(np.isfinite(p).all())
    auc = float(roc_auc_score(y, p)) if defined else float("nan")
    return Check(
        "roc_auc",
        auc,
        min_auc,
        bool(auc >= min_auc),
        "ROC AUC on the eval rows must be at least the threshold (0.5 is a random ranking)",
    )


def prediction_checks(
    p: np.ndarray,
    y: np.ndarray,
    n_rows: int,
    calibration_tolerance: float,
    min_roc_auc: float,
    decision_threshold: float,
    details: dict[str, Any] | None = None,
) -> list[Check]:
    """Every check of the eval predictions `p` against their targets `y` (all but the CV)."""
    return [
        probabilities_valid(p),
        one_prediction_per_row(len(p), n_rows),
        not_constant(p),
        calibration(p, y, calibration_tolerance, decision_threshold, details),
        roc_auc(p, y, min_roc_auc),
    ]


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


def cv_check(
    x: pd.DataFrame,
    y: np.ndarray,
    kinds: Mapping[str, ModelKind],
    train: Any,
    settings: Sanity,
    valid_fraction: float,
) -> Check:
    """Cross-validate a fresh model (the `train` settings) on a capped sample of the training
    rows (x, y); each fold's model stops early on the last `valid_fraction` of its fit rows."""
    n_rows = len(x)
    rows = subsample(n_rows, settings.cv_max_rows, settings.seed)
    x = x.iloc[rows].reset_index(drop=True)
    y = y[rows]

    def fit_predict(x_fit: pd.DataFrame, y_fit: np.ndarray, x_test: pd.DataFrame) -> np.ndarray:
        fresh = model.build(kinds, train)
        cut = early_stopping_start(len(x_fit), valid_fraction)
        valid = (x_fit.iloc[cut:], y_fit[cut:])
        fresh.kind.fit(fresh.estimator, x_fit.iloc[:cut], y_fit[:cut], valid)
        return fresh.predict(x_test)

    log.info(
        "cross-validating a fresh %s: %d folds on %d of %d training rows",
        train.model,
        settings.cv_folds,
        len(rows),
        n_rows,
    )
    started = time.perf_counter()
    aucs = cross_validate(x, y, fit_predict, settings.cv_folds, settings.seed)
    log.info("cross-validation took %.1f s", time.perf_counter() - started)
    details = {
        "folds": settings.cv_folds,
        "rows": len(rows),
        "training_rows": n_rows,
        "sampled": len(rows) < n_rows,
    }
    return cv_stable(aucs, settings.cv_max_deviation, details)
