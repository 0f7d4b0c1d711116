"""End to end: a failing sanity check stops `dvc repro`, and the gate still reads the metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.project import copy_project, run


@pytest.mark.slow
def test_a_failing_sanity_check_stops_dvc_repro(tmp_path):
    project = copy_project(tmp_path / "repo")
    params_path = project / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    # Impossible thresholds; a small CV sample keeps the run short.
    params["sanity"].update(calibration_tolerance=0.0, cv_max_deviation=0.0, cv_max_rows=3000)
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    run(["python", "-m", "cd4ml.generate", "--scale", "tiny", "--out", "data"], project)
    run(["dvc", "add", "data", "--quiet"], project)

    result = run(["dvc", "repro"], project, check=False)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1
    assert errors[0].startswith("error: sanity check failed: calibration (value ")
    assert "; cv_stable (value " in errors[0]
    assert "failed to reproduce 'sanity'" in result.stdout + result.stderr

    report = json.loads((project / "metrics/sanity.json").read_text())  # written all the same
    assert report["passed"] is False
    assert not report["checks"]["calibration"]["passed"]
    cv = report["checks"]["cv_stable"]
    assert not cv["passed"] and len(cv["fold_auc"]) == 5
    # The CV samples the training rows before the early-stopping slice: 24,000 - 10 %.
    assert cv["rows"] == 3000 and cv["training_rows"] == 21_600 and cv["sampled"]
    for name in ("probabilities_valid", "one_prediction_per_row", "not_constant", "roc_auc"):
        assert report["checks"][name]["passed"], name
    assert "sanity" in run(["dvc", "status"], project).stdout  # not recorded as done

    # The gate reads evaluate's metrics, which the failed run still made.
    passed = run(["python", "-m", "cd4ml.gate", "promote"], project)
    assert passed.stdout.startswith("gate passed: roc_auc ")
    assert float((project / "baseline.txt").read_text()) > 0.6
    again = run(["python", "-m", "cd4ml.gate", "promote"], project, check=False)
    assert again.returncode == 1 and "already promoted?" in again.stderr
    shown = run(["python", "-m", "cd4ml.gate", "diff"], project)
    assert shown.stdout.startswith("metrics diff vs HEAD") and "roc_auc" in shown.stdout
    run(
        ["python", "-m", "cd4ml.gate", "diff", "--rev", "HEAD", "--md", "reports/diff.md"], project
    )
    assert "| roc_auc" in Path(project / "reports/diff.md").read_text()
