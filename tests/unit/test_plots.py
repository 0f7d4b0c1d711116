"""kkbox.plots: every picture is a PNG, and the same data gives the same bytes."""

from __future__ import annotations

import numpy as np

from cd4ml import metrics, plots


def _evaluation(out):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    p = np.clip(0.5 * y + 0.5 * rng.random(500), 0, 1)
    scores = metrics.scores(y, p, 0.5)
    scores["oracle_roc_auc"] = 0.9
    plots.evaluation(
        out,
        metrics.roc_points(y, p),
        metrics.roc_points(y, p),
        metrics.pr_points(y, p),
        metrics.calibration_points(y, p),
        {"a": 0.7, "b": 0.3},
        scores,
    )


def test_evaluation_pictures_are_pngs_and_reproducible(tmp_path):
    _evaluation(tmp_path / "one")
    _evaluation(tmp_path / "two")
    names = ["calibration", "confusion", "feature_importance", "precision_recall", "roc"]
    assert sorted(p.stem for p in (tmp_path / "one").iterdir()) == names
    for name in names:
        data = (tmp_path / "one" / f"{name}.png").read_bytes()
        assert data[:4] == b"\x89PNG" and len(data) > 5000
        assert data == (tmp_path / "two" / f"{name}.png").read_bytes()


def test_history_picture(tmp_path):
    records = [
        {"version": v, "roc_auc": 0.7 + v / 100, "oracle_roc_auc": None, "rows": 1000 * v}
        for v in (1, 2, 3)
    ]
    plots.history(records, tmp_path / "h.png")
    assert (tmp_path / "h.png").read_bytes()[:4] == b"\x89PNG"


def test_cold_start_picture_with_a_group_without_auc(tmp_path):
    groups = {
        "known": {"rows": 900, "roc_auc": 0.79},
        "new_member": {"rows": 40, "roc_auc": 0.7},
        "new_song": {"rows": 60, "roc_auc": 0.66},
        "both_new": {"rows": 0, "roc_auc": None},
    }
    plots.cold_start(tmp_path / "c.png", groups)
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
