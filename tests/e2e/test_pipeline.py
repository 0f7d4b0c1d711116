"""End to end: the README's `make run` on a tiny synthetic data set, in a copy of the project.

Python writes bytecode here as on users' machines (project.project_env): it once made every
stage look modified after each run, which PYTHONDONTWRITEBYTECODE=1 hid."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.project import ROOT, copy_project, run

pytestmark = pytest.mark.slow


def _make_data(project: Path, drop_truth: bool = False) -> None:
    run(["python", "-m", "cd4ml.generate", "--scale", "tiny", "--out", "data"], project)
    if drop_truth:
        (project / "data" / "train_truth.csv").unlink()
    run(["dvc", "add", "data", "--quiet"], project)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    project = copy_project(tmp_path_factory.mktemp("e2e") / "repo")
    shown = run(["make", "run", "SCALE=tiny"], project)
    assert "roc_auc" in shown.stdout  # make run ends by showing the metrics
    return project


def test_repro_writes_metrics_with_oracle(project):
    scores = json.loads((project / "metrics/eval.json").read_text())
    for key in ("roc_auc", "valid_roc_auc", "pr_auc", "log_loss", "accuracy", "n_train", "n_eval"):
        assert key in scores
    assert scores["n_train"] + scores["n_eval"] == 30_000
    assert scores["n_eval"] == 6_000
    assert 0.6 < scores["roc_auc"] <= scores["oracle_roc_auc"] + 0.01
    assert 0.75 <= scores["oracle_roc_auc"] <= 0.85
    groups = scores["cold_start"]
    assert sum(g["rows"] for g in groups.values()) == 6_000
    assert groups["new_song"]["rows"] > 0 and groups["new_member"]["rows"] > 0  # time effects
    assert groups["new_song"]["roc_auc"] > 0.55  # better than the prior alone (0.5)


def test_outputs_are_complete(project):
    submission = pd.read_csv(project / "predictions/submission.csv")
    assert list(submission.columns) == ["id", "target"]
    assert len(submission) == 8_000 and submission["target"].between(0, 1).all()
    for name in (
        "roc",
        "precision_recall",
        "calibration",
        "feature_importance",
        "confusion",
        "cold_start",
    ):
        assert (project / f"plots/eval/images/{name}.png").read_bytes()[:4] == b"\x89PNG"
        assert json.loads((project / f"plots/eval/{name}.json").read_text())
    model_info = json.loads((project / "models/model.json").read_text())
    assert model_info["data_version"] and model_info["libraries"]["xgboost"]


def test_status_is_clean_and_a_second_repro_does_nothing(project):
    assert list((project / "src/kkbox/__pycache__").glob("*.pyc")), "no bytecode was written"
    status = run(["dvc", "status"], project)
    assert "Data and pipelines are up to date" in status.stdout, status.stdout
    again = run(["make", "repro"], project)
    assert "Running stage" not in again.stdout, again.stdout


def test_the_committed_lock_matches_a_fresh_clone(tmp_path):
    """In a fresh clone (no data, no outputs) only the absent files differ from dvc.lock: every
    script, module, parameter and committed metric is as dvc.lock recorded it."""
    clone = copy_project(tmp_path / "clone")
    status = json.loads(run(["dvc", "status", "--json"], clone).stdout)
    changed = {
        (stage, path, state)
        for stage, entries in status.items()
        for entry in entries
        if isinstance(entry, dict)
        for path, state in entry.get("changed deps", {}).items()
    }
    stale = {c for c in changed if c[2] != "deleted"}
    assert not stale, f"dvc.lock is stale for {sorted(stale)}: run `make repro` and commit it"


def _without_bundle_hashes(lock: dict) -> dict:
    """dvc.lock with the bundle's hash left out, wherever the bundle is an out or a dep."""
    for stage in lock["stages"].values():
        for entry in [*stage.get("outs", []), *stage.get("deps", [])]:
            if entry["path"] == "models/bundle":
                entry.pop("md5", None)
                entry.pop("size", None)
    return lock


@pytest.mark.timeout(600)
def test_a_git_clone_rebuilds_every_committed_output(tmp_path):
    """A user's `git clone` + run reproduces dvc.lock: every output hashes as committed. Only the
    bundle's hash may differ: its manifest names the last commit of the code, so a bundle built
    before its code was committed (the parent commit, dirty) is rebuilt with the commit itself."""
    if run(["git", "status", "--porcelain", "--untracked-files=no"], ROOT).stdout.strip():
        pytest.skip("uncommitted changes: this checks what is committed (CI's clean clone)")
    clone = tmp_path / "clone"
    run(["git", "clone", "--quiet", str(ROOT), str(clone)], tmp_path)
    # What `make run` does, with this environment (make would install one into the clone).
    run(["python", "-m", "cd4ml.generate", "--scale", "small", "--out", "data"], clone)
    run(["dvc", "add", "--quiet", "data"], clone)
    run(["dvc", "repro"], clone)
    changed = run(["git", "status", "--porcelain"], clone).stdout.split("\n")
    assert {line[3:] for line in changed if line} <= {"dvc.lock"}
    committed = yaml.safe_load((ROOT / "dvc.lock").read_text(encoding="utf-8"))
    rebuilt = yaml.safe_load((clone / "dvc.lock").read_text(encoding="utf-8"))
    assert _without_bundle_hashes(rebuilt) == _without_bundle_hashes(committed)
    manifest = json.loads((clone / "models" / "bundle" / "manifest.json").read_text())
    code = ["--", "src", "params.yaml", "dvc.yaml", "Pipfile.lock"]
    last = run(["git", "log", "-1", "--format=%H", *code], clone).stdout.strip()
    assert manifest["git"] == {"commit": last, "dirty": False}


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
