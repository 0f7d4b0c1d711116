"""End to end: the real `dvc repro` on a tiny synthetic data set, in a copy of the project."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from project import copy_project, run

pytestmark = pytest.mark.slow


def _make_data(project: Path, drop_truth: bool = False) -> None:
    run(["python", "src/generate.py", "--scale", "tiny", "--out", "data"], project)
    if drop_truth:
        (project / "data" / "train_truth.csv").unlink()
    run(["dvc", "add", "data", "--quiet"], project)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    project = copy_project(tmp_path_factory.mktemp("e2e") / "repo")
    _make_data(project)
    run(["dvc", "repro"], project)
    return project


def test_repro_writes_metrics_with_oracle(project):
    scores = json.loads((project / "metrics/eval.json").read_text())
    for key in ("roc_auc", "pr_auc", "log_loss", "accuracy", "n_train", "n_eval"):
        assert key in scores
    assert scores["n_train"] + scores["n_eval"] == 30_000
    assert scores["n_eval"] == 6_000
    assert 0.6 < scores["roc_auc"] <= scores["oracle_roc_auc"] + 0.01
    assert 0.75 <= scores["oracle_roc_auc"] <= 0.85


def test_outputs_are_complete(project):
    submission = pd.read_csv(project / "predictions/submission.csv")
    assert list(submission.columns) == ["id", "target"]
    assert len(submission) == 8_000 and submission["target"].between(0, 1).all()
    for name in ("roc", "precision_recall", "calibration", "feature_importance", "confusion"):
        assert (project / f"plots/eval/images/{name}.png").read_bytes()[:4] == b"\x89PNG"
        assert json.loads((project / f"plots/eval/{name}.json").read_text())
    model_info = json.loads((project / "models/model.json").read_text())
    assert model_info["data_version"] and model_info["libraries"]["xgboost"]


def test_status_is_clean_and_a_second_repro_does_nothing(project):
    status = run(["dvc", "status"], project)
    assert "Data and pipelines are up to date" in status.stdout
    again = run(["dvc", "repro"], project)
    assert "Running stage" not in again.stdout


def test_changing_the_model_is_one_command(project):
    run(["dvc", "exp", "run", "-S", "train.model=rf", "-S", "train.rf.n_estimators=20"], project)
    shown = run(["dvc", "exp", "show", "--json"], project)
    assert "rf" in shown.stdout and "roc_auc" in shown.stdout


def test_pipeline_runs_on_kaggle_files_without_truth(tmp_path):
    project = copy_project(tmp_path / "repo")
    _make_data(project, drop_truth=True)
    run(["dvc", "repro"], project)
    scores = json.loads((project / "metrics/eval.json").read_text())
    assert scores["roc_auc"] > 0.6
    assert "oracle_roc_auc" not in scores
