"""End to end: the README's `make run` on a tiny synthetic data set, in a copy of the project.

Python writes bytecode here as on users' machines (project.project_env): it once made every
stage look modified after each run, which PYTHONDONTWRITEBYTECODE=1 hid."""

from __future__ import annotations

import json
import shutil
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
    scores = json.loads((project / "eval/metrics.json").read_text())
    for key in ("roc_auc", "valid_roc_auc", "pr_auc", "log_loss", "accuracy", "n_train", "n_eval"):
        assert key in scores
    assert scores["n_train"] + scores["n_eval"] == 30_000
    assert scores["n_eval"] == 6_000
    assert 0.6 < scores["roc_auc"] <= scores["oracle_roc_auc"] + 0.01
    assert 0.75 <= scores["oracle_roc_auc"] <= 0.85
    groups = scores["slices"]
    assert sum(g["rows"] for g in groups.values()) == 6_000
    assert groups["new_song"]["rows"] > 0 and groups["new_member"]["rows"] > 0  # time effects
    assert groups["new_song"]["roc_auc"] > 0.55  # better than the prior alone (0.5)
    # The simple baseline (logreg on every feature) on the same rows: close to, below, the trees.
    baseline = scores["baseline"]
    assert baseline["n_features"] == 29
    assert 0.6 < baseline["roc_auc"] < scores["roc_auc"]


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
        "slices",
    ):
        assert (project / f"eval/plots/images/{name}.png").read_bytes()[:4] == b"\x89PNG"
        assert json.loads((project / f"eval/plots/custom/{name}.json").read_text())
    model_info = json.loads((project / "models/model/model.json").read_text())
    assert model_info["data_version"] and model_info["libraries"]["xgboost"]
    assert (model_info["kind"], model_info["engine"]) == ("xgb", "local")
    assert (project / "models/model/model.ubj").stat().st_size > 0


def test_status_is_clean_and_a_second_repro_does_nothing(project):
    for package in ("cd4ml", "kkbox"):
        written = list((project / "src" / package / "__pycache__").glob("*.pyc"))
        assert written, f"no bytecode was written in src/{package}"
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
        (stage, path, state if isinstance(state, str) else json.dumps(state, sort_keys=True))
        for stage, entries in status.items()
        for entry in entries
        if isinstance(entry, dict)
        for path, state in entry.get("changed deps", {}).items()
    }
    stale = {c for c in changed if c[2] != "deleted"}
    assert not stale, f"dvc.lock is stale for {sorted(stale)}: run `make repro` and commit it"


@pytest.mark.timeout(600)
def test_a_git_clone_rebuilds_every_committed_output(tmp_path):
    """A user's `git clone` + run reproduces dvc.lock, the bundle included: its manifest records
    a content hash of the code and params (never the commit), so git status stays clean."""
    if run(["git", "status", "--porcelain", "--untracked-files=no"], ROOT).stdout.strip():
        pytest.skip("uncommitted changes: this checks what is committed (CI's clean clone)")
    clone = tmp_path / "clone"
    run(["git", "clone", "--quiet", str(ROOT), str(clone)], tmp_path)
    # What `make run` does, with this environment (make would install one into the clone).
    run(["python", "-m", "cd4ml.generate", "--scale", "small", "--out", "data"], clone)
    run(["dvc", "add", "--quiet", "data"], clone)
    run(["dvc", "repro"], clone)
    assert run(["git", "status", "--porcelain"], clone).stdout == ""
    manifest = json.loads((clone / "models" / "bundle" / "manifest.json").read_text())
    assert "git" not in manifest and len(manifest["build"]["sha256"]) == 64
    shown = run(["python", "-m", "cd4ml.provenance", "--rev", "HEAD"], clone)
    assert shown.stdout.startswith("HEAD holds the code and params of models/bundle")


def test_committing_code_needs_no_second_commit(project):
    """Change the code, run, commit code and lock together; a clean tree then stays clean and
    DVC up to date: no lock-only commit."""
    copy = project.parent / "commit-trap"
    shutil.copytree(project, copy, symlinks=True)
    run(["git", "add", "-A"], copy)
    run(["git", "commit", "-qm", "the first run"], copy)
    script = copy / "src" / "evaluate.py"
    script.write_text(script.read_text() + "\n# a comment: new code, the same results\n")
    run(["make", "repro"], copy)
    run(["git", "add", "-A"], copy)
    run(["git", "commit", "-qm", "code and its lock, one commit"], copy)
    again = run(["make", "repro"], copy)
    assert "Running stage" not in again.stdout, again.stdout
    assert run(["git", "status", "--porcelain"], copy).stdout == ""
    status = run(["dvc", "status"], copy)
    assert "Data and pipelines are up to date" in status.stdout
    shown = run(["python", "-m", "cd4ml.provenance", "--rev", "HEAD"], copy)
    assert shown.stdout.startswith("HEAD holds the code and params of models/bundle")
    old = run(["python", "-m", "cd4ml.provenance", "--rev", "HEAD~1"], copy, check=False)
    assert old.returncode == 1 and "src/evaluate.py" in old.stderr


def test_serving_gate_and_monitor_changes_rerun_no_stage(project):
    """Each stage depends on its own params and code only (dvc.yaml): a serving, gate or
    monitor setting, or one of their modules, changes nothing of the pipeline."""
    copy = project.parent / "sections"
    shutil.copytree(project, copy, symlinks=True)
    path = copy / "params.yaml"
    params = yaml.safe_load(path.read_text(encoding="utf-8"))
    params["serve"]["max_batch_rows"] = 77
    params["gate"]["bootstrap_rounds"] = 99
    params["monitor"]["min_rows"] = 5
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    for module in ("serve", "predlog", "gate", "registry", "monitor", "report", "mrnote"):
        code = copy / "src" / "cd4ml" / f"{module}.py"
        code.write_text(code.read_text() + "\n# changed\n")
    status = run(["dvc", "status"], copy)
    assert "Data and pipelines are up to date" in status.stdout, status.stdout
    params["train"]["seed"] = 43
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    changed = run(["dvc", "status"], copy).stdout
    assert "train:" in changed and "bundle:" in changed and "validate:" not in changed


def test_changing_the_model_is_one_command(project):
    run(["dvc", "exp", "run", "-S", "train.model=rf", "-S", "train.rf.n_estimators=20"], project)
    shown = run(["dvc", "exp", "show", "--json"], project)
    assert "rf" in shown.stdout and "roc_auc" in shown.stdout


def test_pipeline_runs_on_kaggle_files_without_truth(tmp_path):
    project = copy_project(tmp_path / "repo")
    _make_data(project, drop_truth=True)
    run(["dvc", "repro"], project)
    scores = json.loads((project / "eval/metrics.json").read_text())
    assert scores["roc_auc"] > 0.6
    assert "oracle_roc_auc" not in scores
