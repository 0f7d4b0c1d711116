"""kkbox.metrics: scores and plot records on arrays small enough to check by hand."""

from __future__ import annotations

import numpy as np
import pytest

from kkbox import metrics

Y = np.array([0, 0, 1, 1])
P = np.array([0.1, 0.6, 0.4, 0.9])


def test_scores_at_a_threshold():
    s = metrics.scores(Y, P, threshold=0.5)
    assert s["roc_auc"] == pytest.approx(0.75)  # 3 of the 4 (positive, negative) pairs ordered
    assert s["accuracy"] == 0.5 and s["positive_rate"] == 0.5
    assert s["predicted_positive_rate"] == 0.5
    assert s["confusion"] == {"tn": 1, "fp": 1, "fn": 1, "tp": 1}
    assert s["log_loss"] == pytest.approx(-np.mean(np.log([0.9, 0.4, 0.4, 0.9])))


def test_a_perfect_ranking_and_its_curves():
    p = np.array([0.1, 0.2, 0.8, 0.9])
    assert metrics.roc_auc(Y, p) == 1.0
    roc = metrics.roc_points(Y, p)
    assert roc[0]["fpr"] == 0.0 and roc[-1] == {"fpr": 1.0, "tpr": 1.0, "threshold": 0.1}
    assert all(r["threshold"] <= 1.0 for r in roc)  # sklearn's first threshold is inf
    pr = metrics.pr_points(Y, p)
    assert pr[0]["recall"] == 0.0 and pr[-1]["recall"] == 1.0


def test_curves_are_thinned_to_at_most_keep_points_with_both_ends():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 10_000)
    p = rng.random(10_000)
    roc = metrics.roc_points(y, p, keep=50)
    full = metrics.roc_points(y, p, keep=100_000)
    assert len(roc) <= 50 and roc[0] == full[0] and roc[-1] == full[-1]


def test_calibration_bins_skip_empty_ones():
    points = metrics.calibration_points(Y, P, bins=10)
    assert [c["rows"] for c in points] == [1, 1, 1, 1]
    assert points[0] == {"predicted": 0.1, "observed": 0.0, "rows": 1}
    assert metrics.calibration_points(np.array([1]), np.array([1.0]))[0]["rows"] == 1


def test_confusion_sample_is_evenly_spaced_and_capped():
    y = np.arange(100) % 2
    sample = metrics.confusion_sample(y, y.astype(float), 0.5, keep=10)
    assert len(sample) == 10 and all(s["actual"] == s["predicted"] for s in sample)


def test_cold_start_groups_rows_by_what_training_had_seen():
    y = np.array([0, 1, 0, 1, 1, 0, 1])
    p = np.array([0.2, 0.8, 0.9, 0.1, 0.6, 0.3, 0.5])
    member_seen = np.array([1, 1, 0, 0, 1, 1, 0], dtype=bool)
    song_seen = np.array([1, 1, 1, 1, 0, 0, 0], dtype=bool)
    groups = metrics.cold_start(y, p, member_seen, song_seen)
    assert groups["known"] == {"rows": 2, "roc_auc": 1.0}
    assert groups["new_member"] == {"rows": 2, "roc_auc": 0.0}  # inverted on these rows
    assert groups["new_song"] == {"rows": 2, "roc_auc": 1.0}
    assert groups["both_new"] == {"rows": 1, "roc_auc": None}  # one class only
    assert sum(g["rows"] for g in groups.values()) == len(y)
