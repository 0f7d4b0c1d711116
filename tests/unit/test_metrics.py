"""cd4ml.metrics: scores and plot records on arrays small enough to check by hand."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from cd4ml import metrics

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


def test_by_slice_gives_the_rows_and_roc_auc_of_each_slice():
    y = np.array([0, 1, 0, 1, 1, 0, 1])
    p = np.array([0.2, 0.8, 0.9, 0.1, 0.6, 0.3, 0.5])
    member_seen = np.array([1, 1, 0, 0, 1, 1, 0], dtype=bool)
    song_seen = np.array([1, 1, 1, 1, 0, 0, 0], dtype=bool)
    slices = {
        "known": member_seen & song_seen,
        "new_member": ~member_seen & song_seen,
        "new_song": member_seen & ~song_seen,
        "both_new": ~member_seen & ~song_seen,
        "all": np.ones(len(y), dtype=bool),  # slices may overlap
        "none": np.zeros(len(y), dtype=bool),
    }
    groups = metrics.by_slice(y, p, slices)
    assert list(groups) == list(slices)  # in the problem's order
    assert groups["known"] == {"rows": 2, "roc_auc": 1.0}
    assert groups["new_member"] == {"rows": 2, "roc_auc": 0.0}  # inverted on these rows
    assert groups["new_song"] == {"rows": 2, "roc_auc": 1.0}
    assert groups["both_new"] == {"rows": 1, "roc_auc": None}  # one class only
    assert groups["all"] == {"rows": 7, "roc_auc": pytest.approx(roc_auc_score(y, p))}
    assert groups["none"] == {"rows": 0, "roc_auc": None}
    # 0/1 masks are taken as booleans, not as row indices
    as_ints = metrics.by_slice(y, p, {"known": slices["known"].astype(int)})
    assert as_ints["known"] == groups["known"]


def ranked_auc(y: np.ndarray, p: np.ndarray, w: np.ndarray | None = None) -> float:
    weights = np.ones(len(y)) if w is None else w
    return metrics._Ranked(y, p).auc(weights)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_ranked_auc_equals_sklearns_roc_auc(ties, weighted):
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 500)
    p = rng.random(500) + 0.4 * y
    if ties:
        p = np.round(p, 1)  # about a dozen distinct scores
        assert len(np.unique(p)) < 20
    w = rng.integers(0, 4, 500).astype(float) if weighted else None
    expected = roc_auc_score(y, p, sample_weight=w)
    assert ranked_auc(y, p, w) == pytest.approx(expected, abs=1e-12)
    assert 0.6 < expected < 0.9


def test_ranked_auc_counts_a_tied_pair_half_and_a_weight_as_repeated_rows():
    y = np.array([0, 1, 0, 1])
    assert ranked_auc(y, np.array([0.5, 0.5, 0.5, 0.5])) == 0.5
    assert ranked_auc(y, np.array([0.1, 0.5, 0.5, 0.9])) == 0.875  # 3 ordered + a tie, of 4
    w = np.array([1.0, 2.0, 1.0, 0.0])
    repeated = ranked_auc(np.array([0, 1, 1, 0]), np.array([0.1, 0.4, 0.4, 0.6]))
    assert ranked_auc(y, np.array([0.1, 0.4, 0.6, 0.9]), w) == repeated == 0.5
    assert np.isnan(ranked_auc(np.array([1, 1]), np.array([0.2, 0.3])))  # one class only


def two_models(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, a clearly better model's scores and a weak one's."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    return y, y + rng.normal(0, 0.8, n), y + rng.normal(0, 3.0, n)


def test_paired_auc_difference_of_a_clearly_better_model():
    y, good, weak = two_models()
    result = metrics.paired_auc_difference(y, good, weak, rounds=300, confidence=0.95, seed=1)
    assert result["challenger_roc_auc"] == pytest.approx(roc_auc_score(y, good), abs=1e-12)
    assert result["champion_roc_auc"] == pytest.approx(roc_auc_score(y, weak), abs=1e-12)
    assert result["difference"] == result["challenger_roc_auc"] - result["champion_roc_auc"]
    assert 0 < result["interval_low"] < result["difference"] < result["interval_high"]
    assert (result["rounds"], result["confidence"], result["n_rows"]) == (300, 0.95, 600)
    swapped = metrics.paired_auc_difference(y, weak, good, rounds=300, confidence=0.95, seed=1)
    assert swapped["difference"] == pytest.approx(-result["difference"], abs=1e-12)
    assert swapped["interval_high"] == pytest.approx(-result["interval_low"], abs=1e-12)


def test_paired_auc_difference_interval_is_the_bootstraps_percentile_one():
    y, good, weak = two_models()
    result = metrics.paired_auc_difference(y, good, weak, rounds=400, confidence=0.9, seed=2)
    rng = np.random.default_rng(99)  # another seed: the same interval, up to bootstrap noise
    differences = []
    for _ in range(400):
        rows = rng.integers(0, len(y), len(y))
        differences.append(roc_auc_score(y[rows], good[rows]) - roc_auc_score(y[rows], weak[rows]))
    low, high = np.quantile(differences, [0.05, 0.95])
    assert result["interval_low"] == pytest.approx(low, abs=0.01)
    assert result["interval_high"] == pytest.approx(high, abs=0.01)


def test_paired_auc_difference_is_reproducible_from_its_seed():
    y, good, weak = two_models()
    first = metrics.paired_auc_difference(y, good, weak, rounds=100, confidence=0.95, seed=5)
    assert metrics.paired_auc_difference(y, good, weak, 100, 0.95, 5) == first
    other = metrics.paired_auc_difference(y, good, weak, 100, 0.95, 6)
    assert other["difference"] == first["difference"]
    assert other["interval_low"] != first["interval_low"]


def test_paired_auc_difference_interval_widens_with_confidence():
    y, good, weak = two_models()
    narrow = metrics.paired_auc_difference(y, good, weak, 300, 0.5, 1)
    wide = metrics.paired_auc_difference(y, good, weak, 300, 0.99, 1)
    assert wide["interval_low"] < narrow["interval_low"] < narrow["interval_high"]
    assert narrow["interval_high"] < wide["interval_high"]


def test_paired_auc_difference_of_identical_models_is_exactly_zero():
    y, good, _ = two_models()
    result = metrics.paired_auc_difference(y, good, good.copy(), 200, 0.95, 1)
    assert result["difference"] == 0.0
    assert (result["interval_low"], result["interval_high"]) == (0.0, 0.0)
