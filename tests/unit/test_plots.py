"""cd4ml.plots: the evaluation's figures, the slices' and the history's, saved as PNG: the same
data gives the same bytes."""

from __future__ import annotations

import numpy as np

from cd4ml import metrics, plots

NAMES = ["calibration", "confusion", "feature_importance", "precision_recall", "roc"]


def _evaluation(oracle: bool = True) -> dict:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    p = np.clip(0.5 * y + 0.5 * rng.random(500), 0, 1)
    scores = metrics.scores(y, p, 0.5)
    confusion = scores.pop("confusion")
    scores["oracle_roc_auc"] = 0.9
    return plots.evaluation(
        metrics.roc_points(y, p),
        metrics.roc_points(y, p) if oracle else None,
        metrics.pr_points(y, p),
        metrics.calibration_points(y, p),
        {"a": 0.7, "b": 0.3},
        scores,
        confusion,
    )


def _saved(figures: dict, folder) -> dict[str, bytes]:
    for name, fig in figures.items():
        plots.save(fig, folder / f"{name}.png")
    return {p.stem: p.read_bytes() for p in folder.iterdir()}


def test_evaluation_figures_save_as_pngs_and_are_reproducible(tmp_path):
    one = _saved(_evaluation(), tmp_path / "one")
    two = _saved(_evaluation(), tmp_path / "two")
    assert sorted(one) == NAMES
    for name in NAMES:
        assert one[name][:4] == b"\x89PNG" and len(one[name]) > 5000
        assert one[name] == two[name]
    assert not [p for p in (tmp_path / "one").iterdir() if p.suffix != ".png"]  # no temp file


def test_evaluation_without_an_oracle_draws_the_model_only():
    figures = _evaluation(oracle=False)
    labels = [line.get_label() for line in figures["roc"].axes[0].get_lines()]
    assert labels[0].startswith("model (AUC ") and not any("oracle" in x for x in labels)
    with_oracle = _evaluation()["roc"].axes[0].get_lines()
    assert any(line.get_label() == "oracle (AUC 0.9000)" for line in with_oracle)
    for fig in [*figures.values()]:
        plots.close(fig)


def test_history_picture(tmp_path):
    records = [
        {"version": v, "roc_auc": 0.7 + v / 100, "oracle_roc_auc": None, "rows": 1000 * v}
        for v in (1, 2, 3)
    ]
    plots.history(records, tmp_path / "h.png")
    assert (tmp_path / "h.png").read_bytes()[:4] == b"\x89PNG"


def test_slices_picture_with_a_slice_without_auc(tmp_path):
    groups = {
        "known": {"rows": 900, "roc_auc": 0.79},
        "new_member": {"rows": 40, "roc_auc": 0.7},
        "new_song": {"rows": 60, "roc_auc": 0.66},
        "both_new": {"rows": 0, "roc_auc": None},
    }
    fig = plots.slices(groups, 1000)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == list(groups)[::-1]
    texts = [t.get_text() for t in ax.texts]
    assert " 0.790, 900 rows (90%)" in texts and " n/a, 0 rows (0%)" in texts
    plots.save(fig, tmp_path / "s.png")
    first = (tmp_path / "s.png").read_bytes()
    plots.save(plots.slices(groups, 1000), tmp_path / "s.png")
    assert first[:4] == b"\x89PNG" and (tmp_path / "s.png").read_bytes() == first
