"""End to end: a model kind is one module and its name in params.yaml. `logreg` (scikit-learn's
LogisticRegression through skops) is trained, gated against the xgb champion on the same rows,
bundled and served, with nothing downstream changed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.e2e.test_serve import call, server
from tests.project import run, tiny_project

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """The tiny pipeline with xgb (the champion), then again with logreg (the challenger)."""
    project = tiny_project(tmp_path_factory.mktemp("logreg") / "project")
    run(["make", "repro"], project)
    shutil.copytree(project / "models" / "bundle", project / "models" / "champion")
    run(["dvc", "exp", "run", "-S", "train.model=logreg"], project)
    return project


def test_logreg_is_trained_and_bundled_in_its_own_format(project):
    info = json.loads((project / "models" / "model" / "model.json").read_text())
    assert (info["kind"], info["file"]) == ("logreg", "model.skops")
    assert info["fit"]["iterations"] >= 1
    manifest = json.loads((project / "models" / "bundle" / "manifest.json").read_text())
    assert (manifest["model"], manifest["model_file"]) == ("logreg", "model.skops")
    assert "model.skops" in manifest["files"] and "model.ubj" not in manifest["files"]
    assert manifest["build"]["params"]["train"]["model"] == "logreg"
    scores = json.loads((project / "eval" / "metrics.json").read_text())
    assert 0.6 < scores["roc_auc"] < scores["oracle_roc_auc"]
    importance = json.loads((project / "eval/plots/custom/feature_importance.json").read_text())
    assert abs(sum(r["importance"] for r in importance) - 1) < 1e-3


def test_the_gate_holds_logreg_against_the_xgb_champion_on_the_same_rows(project):
    compared = run(["python", "-m", "cd4ml.gate", "compare"], project)
    report = json.loads((project / "metrics" / "gate.json").read_text())
    champion = json.loads((project / "models/champion/manifest.json").read_text())
    assert champion["model"] == "xgb"
    # Both bundles score the same eval rows: the champion's AUC is the one it was released with.
    assert report["champion_roc_auc"] == pytest.approx(champion["metrics"]["roc_auc"], abs=1e-6)
    assert report["n_rows"] == 6000 and report["interval"] is not None
    # The simple baseline does not beat the trees on the same rows: the gate says so.
    assert not report["passed"], report
    assert compared.stdout.startswith("gate failed: roc_auc")
    # Evaluate's simple baseline is this very model (logreg, its settings, train.seed, every
    # feature): a tie on the same rows, which fails the gate as well, and the line says so.
    scores = json.loads((project / "eval" / "metrics.json").read_text())
    assert scores["baseline"]["roc_auc"] == pytest.approx(scores["roc_auc"], abs=1e-9)
    assert report["simple_baseline"]["gain"] == pytest.approx(0, abs=1e-9)
    assert not report["simple_baseline"]["passed"]
    assert "; also roc_auc " in compared.stdout
    assert "does not beat the simple baseline's" in compared.stdout
    check = run(["python", "-m", "cd4ml.gate", "check"], project, check=False)
    errors = [line for line in check.stderr.splitlines() if line.startswith("error: ")]
    assert check.returncode == 1 and errors[0].startswith("error: gate failed"), check.stderr


def test_the_service_serves_the_logreg_bundle(project):
    with server(project, "--allow-unsigned") as (url, _):  # a local build
        assert call(f"{url}/metadata")["model"] == "logreg"
        answer = call(
            f"{url}/predict",
            {
                "rows": [
                    {
                        "msno": "m",
                        "song_id": "s",
                        "source_system_tab": None,
                        "source_screen_name": None,
                        "source_type": "radio",
                    }
                ]
            },
        )
        assert 0 < answer["probabilities"][0] < 1
        assert answer["flags"] == {"unknown_member": 1, "unknown_song": 1}
