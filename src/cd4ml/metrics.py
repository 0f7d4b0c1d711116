"""Evaluation metrics and plot data: pure functions of labels and predicted probabilities."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import AfterValidator, Field
from sklearn import metrics as skm

from cd4ml.params import Fraction, OpenFraction, Section

# Where stage evaluate's metrics are (dvc.yaml's `metrics:`): the tools' default.
EVAL_METRICS = "eval/metrics.json"
# The simple baseline's ROC AUC in that file (DVCLive nests `baseline/roc_auc`): the gate's.
BASELINE = "baseline"

_FEATURE_LIST = "distinct feature names, or [] for every feature"


def _distinct_names(names: list[str]) -> list[str]:
    if any(not name for name in names) or len(set(names)) != len(names):
        raise ValueError(_FEATURE_LIST)
    return names


class Evaluate(Section):
    """Stage evaluate."""

    threshold: OpenFraction  # the decision threshold of accuracy and the confusion matrix
    max_valid_gap: Fraction  # warn when the valid rows' ROC AUC is this far from eval's
    # The simple baseline scored on the same rows: a model kind of the problem, fitted with its
    # train.<kind> settings and train.seed on these features of the train (and valid) rows.
    baseline_kind: Annotated[
        str, Field(min_length=1, json_schema_extra={"allowed": "a model kind of the problem"})
    ]
    baseline_features: Annotated[
        list[str],
        AfterValidator(_distinct_names),
        Field(json_schema_extra={"allowed": _FEATURE_LIST}),
    ]
    # more fit rows: the baseline sees a sample (train.seed), and the same share of valid's
    baseline_max_rows: Annotated[int, Field(ge=1)]


def scores(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float | int]:
    """ROC AUC plus the usual companions, at one decision threshold."""
    predicted = p >= threshold
    tn, fp, fn, tp = skm.confusion_matrix(y, predicted, labels=[0, 1]).ravel()
    return {
        "roc_auc": float(skm.roc_auc_score(y, p)),
        "pr_auc": float(skm.average_precision_score(y, p)),
        "log_loss": float(skm.log_loss(y, np.clip(p, 1e-7, 1 - 1e-7), labels=[0, 1])),
        "accuracy": float((predicted == y).mean()),
        "positive_rate": float(y.mean()),
        "predicted_positive_rate": float(predicted.mean()),
        "confusion": {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)},
    }


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC AUC alone (the oracle needs no more)."""
    return float(skm.roc_auc_score(y, p))


def _thin(n_points: int, keep: int) -> np.ndarray:
    """Indices of at most `keep` evenly spaced points (first and last kept): plots stay small.
    Curves of a million eval rows have about as many points: records are made for these only."""
    if n_points <= keep:
        return np.arange(n_points)
    return np.unique(np.linspace(0, n_points - 1, keep).round().astype(int))


def roc_points(y: np.ndarray, p: np.ndarray, keep: int = 200) -> list[dict]:
    """ROC curve as records of fpr / tpr / threshold."""
    fpr, tpr, thr = skm.roc_curve(y, p)
    thr = np.minimum(thr, 1.0)
    return [
        {
            "fpr": round(float(fpr[i]), 5),
            "tpr": round(float(tpr[i]), 5),
            "threshold": round(float(thr[i]), 5),
        }
        for i in _thin(len(fpr), keep)
    ]


def pr_points(y: np.ndarray, p: np.ndarray, keep: int = 200) -> list[dict]:
    """Precision-recall curve as records of recall / precision."""
    precision, recall, _ = skm.precision_recall_curve(y, p)
    recall, precision = recall[::-1], precision[::-1]
    return [
        {"recall": round(float(recall[i]), 5), "precision": round(float(precision[i]), 5)}
        for i in _thin(len(recall), keep)
    ]


def calibration_points(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict]:
    """Mean predicted vs observed replay rate in equal-width probability bins."""
    which = np.minimum((p * bins).astype(int), bins - 1)
    count = np.bincount(which, minlength=bins)
    mean_p = np.bincount(which, weights=p, minlength=bins)
    mean_y = np.bincount(which, weights=y, minlength=bins)
    return [
        {
            "predicted": round(float(mean_p[b] / count[b]), 5),
            "observed": round(float(mean_y[b] / count[b]), 5),
            "rows": int(count[b]),
        }
        for b in range(bins)
        if count[b] > 0
    ]


def confusion_sample(
    y: np.ndarray, p: np.ndarray, threshold: float, keep: int = 5000
) -> list[dict]:
    """Actual/predicted records of an evenly spaced sample of rows (DVC's confusion template
    counts records; the exact counts are in the metrics file)."""
    idx = np.unique(np.linspace(0, len(y) - 1, min(keep, len(y))).round().astype(int))
    return [{"actual": int(y[i]), "predicted": int(p[i] >= threshold)} for i in idx]


def by_slice(
    y: np.ndarray, p: np.ndarray, slices: dict[str, np.ndarray]
) -> dict[str, dict[str, float | int | None]]:
    """Rows and ROC AUC of each slice of the eval rows (a boolean mask each); AUC None where a
    slice lacks a class."""
    out: dict[str, dict[str, float | int | None]] = {}
    for name, rows in slices.items():
        rows = np.asarray(rows, dtype=bool)
        both_classes = len(np.unique(y[rows])) == 2
        auc = float(skm.roc_auc_score(y[rows], p[rows])) if both_classes else None
        out[name] = {"rows": int(rows.sum()), "roc_auc": auc}
    return out


class _Ranked:
    """One model's scores ranked once, so that the AUC of any row weighting is O(rows)."""

    def __init__(self, y: np.ndarray, p: np.ndarray) -> None:
        order = np.argsort(p, kind="stable")
        ranked = p[order]
        # Each row's group of tied scores, in rank order; a positive-negative pair in one group
        # counts half (as in the ROC AUC). Kept in the rows' own order, so that a weighting is
        # summed per group by one pass over it (no gather into rank order).
        rank = np.cumsum(np.concatenate([[True], ranked[1:] != ranked[:-1]])) - 1
        self.group = np.empty(len(p), dtype=np.int64)
        self.group[order] = rank
        self.groups = int(rank[-1]) + 1 if len(p) else 0
        self.positive = np.asarray(y, dtype=np.float64)

    def auc(self, weights: np.ndarray) -> float:
        both = np.bincount(self.group, weights=weights, minlength=self.groups)
        pos = np.bincount(self.group, weights=weights * self.positive, minlength=self.groups)
        neg = both - pos
        below = np.cumsum(neg)
        below -= 0.5 * neg  # the negatives below a group, plus half of its own
        pairs = pos.sum() * neg.sum()
        return float(np.dot(pos, below) / pairs) if pairs else float("nan")


def paired_auc_difference(
    y: np.ndarray,
    p_new: np.ndarray,
    p_old: np.ndarray,
    rounds: int,
    confidence: float,
    seed: int,
) -> dict[str, float | int]:
    """ROC AUC of two models on the same rows, their difference (new - old), and the paired
    bootstrap interval of the difference: each round resamples the rows (with replacement,
    the same rows for both models) and takes the difference again; the interval is the
    percentile one at `confidence`."""
    new, old = _Ranked(y, p_new), _Ranked(y, p_old)
    ones = np.ones(len(y))
    auc_new, auc_old = new.auc(ones), old.auc(ones)
    rng = np.random.default_rng(seed)
    differences = np.empty(rounds)
    for i in range(rounds):
        weights = np.bincount(rng.integers(0, len(y), len(y)), minlength=len(y)).astype(float)
        differences[i] = new.auc(weights) - old.auc(weights)
    tail = (1.0 - confidence) / 2.0
    low, high = np.nanquantile(differences, [tail, 1.0 - tail])
    return {
        "challenger_roc_auc": auc_new,
        "champion_roc_auc": auc_old,
        "difference": auc_new - auc_old,
        "interval_low": float(low),
        "interval_high": float(high),
        "confidence": confidence,
        "rounds": rounds,
        "n_rows": len(y),
    }
