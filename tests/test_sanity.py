"""Model sanity checks: the pure checks on tiny arrays; a failing check stops `dvc repro`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from kkbox import sanity as S
from project import copy_project, run


def test_valid_probabilities_pass():
    check = S.probabilities_valid(np.array([0.0, 0.3, 1.0]))
    assert check.passed and check.value == 0 and check.threshold == 0


@pytest.mark.parametrize(
    "p, bad", [([0.2, np.nan, 0.4], 1), ([0.2, np.inf, -np.inf], 2), ([-0.01, 0.5, 1.2], 2)]
)
def test_nan_infinite_and_out_of_range_probabilities_fail(p, bad):
    check = S.probabilities_valid(np.array(p))
    assert not check.passed and check.value == bad


def test_one_prediction_per_row():
    assert S.one_prediction_per_row(3, 3).passed
    wrong = S.one_prediction_per_row(4, 3)
    assert not wrong.passed and (wrong.value, wrong.threshold) == (4, 3)


def test_constant_predictions_fail():
    assert not S.not_constant(np.full(5, 0.42)).passed
    assert not S.not_constant(np.array([np.nan, np.nan])).passed
    varied = S.not_constant(np.array([0.1, 0.9, np.nan]))
    assert varied.passed and varied.value == pytest.approx(0.4)


def test_positive_rate_within_relative_tolerance():
    p = np.array([0.9, 0.6, 0.2, 0.1])  # half predicted positive at 0.5
    ok = S.positive_rate(p, 0.5, train_rate=0.47, tolerance=0.10)
    assert ok.passed and ok.value == pytest.approx(0.03 / 0.47)
    assert ok.details["predicted_positive_rate"] == 0.5


def test_positive_rate_off_fails():
    p = np.array([0.9, 0.8, 0.7, 0.1])  # 75 % predicted positive, 50 % in training
    check = S.positive_rate(p, 0.5, train_rate=0.5, tolerance=0.10)
    assert not check.passed and check.value == pytest.approx(0.5)
    assert not S.positive_rate(p, 0.95, train_rate=0.5, tolerance=0.10).passed  # all negative


def test_cv_stability():
    stable = S.cv_stable([0.74, 0.75, 0.76], max_deviation=0.02)
    assert stable.passed and stable.value == pytest.approx(0.01)
    assert stable.as_dict()["fold_auc"] == {"1": 0.74, "2": 0.75, "3": 0.76}
    shaky = S.cv_stable([0.70, 0.75, 0.80], max_deviation=0.02)
    assert not shaky.passed and shaky.value == pytest.approx(0.05)


def test_subsample_is_capped_sorted_and_deterministic():
    assert S.subsample(5, 10, seed=1).tolist() == [0, 1, 2, 3, 4]
    rows = S.subsample(1000, 100, seed=1)
    assert len(rows) == 100 == len(set(rows)) and (np.diff(rows) > 0).all()
    assert rows.tolist() == S.subsample(1000, 100, seed=1).tolist()


def test_cross_validate_gives_one_auc_per_fold():
    rng = np.random.default_rng(0)
    x = pd.DataFrame({"signal": rng.random(400)})
    y = (x["signal"] + rng.normal(0, 0.2, 400) > 0.5).astype(int).to_numpy()
    seen = []

    def fit_predict(x_fit, y_fit, x_test):
        seen.append((len(x_fit), len(x_test)))
        return x_test["signal"].to_numpy()

    aucs = S.cross_validate(x, y, fit_predict, folds=4, seed=3)
    assert len(aucs) == 4 and all(0.8 < a <= 1.0 for a in aucs)
    assert seen == [(300, 100)] * 4
    assert aucs == S.cross_validate(x, y, fit_predict, folds=4, seed=3)


def test_report_and_failure_message_name_the_failed_checks():
    checks = [S.one_prediction_per_row(3, 3), S.cv_stable([0.7, 0.8], 0.02), S.not_constant([1.0])]
    report = S.report(checks)
    assert report["passed"] is False
    assert report["checks"]["one_prediction_per_row"] == {
        "value": 3,
        "threshold": 3,
        "passed": True,
    }
    assert set(report["checks"]["cv_stable"]) >= {"value", "threshold", "passed", "fold_auc"}
    message = S.failure_message(checks)
    assert message.startswith("sanity check failed: cv_stable (value 0.05, threshold 0.02: ")
    assert "; not_constant (value 0, threshold 1e-06: " in message
    assert "one_prediction_per_row" not in message
    assert S.failure_message(checks[:1]) is None


def test_infinite_value_is_written_as_null():
    # A training positive rate of 0 gives an infinite relative deviation; JSON has no inf.
    entry = S.positive_rate(np.array([0.7]), 0.5, train_rate=0.0, tolerance=0.1).as_dict()
    assert entry["value"] is None and entry["passed"] is False
    json.dumps(entry, allow_nan=False)


@pytest.mark.slow
def test_a_failing_sanity_check_stops_dvc_repro(tmp_path):
    project = copy_project(tmp_path / "repo")
    params_path = project / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    # Impossible thresholds; a small CV sample keeps the run short.
    params["sanity"].update(positive_rate_tolerance=0.0, cv_max_deviation=0.0, cv_max_rows=3000)
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    run(["python", "src/generate.py", "--scale", "tiny", "--out", "data"], project)
    run(["dvc", "add", "data", "--quiet"], project)

    result = run(["dvc", "repro"], project, check=False)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1
    assert errors[0].startswith("error: sanity check failed: positive_rate (value ")
    assert "; cv_stable (value " in errors[0]
    assert "failed to reproduce 'sanity'" in result.stdout + result.stderr

    report = json.loads((project / "metrics/sanity.json").read_text())  # written all the same
    assert report["passed"] is False
    assert not report["checks"]["positive_rate"]["passed"]
    cv = report["checks"]["cv_stable"]
    assert not cv["passed"] and len(cv["fold_auc"]) == 5
    assert cv["rows"] == 3000 and cv["training_rows"] == 24_000 and cv["sampled"]
    for name in ("probabilities_valid", "one_prediction_per_row", "not_constant"):
        assert report["checks"][name]["passed"], name
    assert "sanity" in run(["dvc", "status"], project).stdout  # not recorded as done

    # The gate reads evaluate's metrics, which the failed run still made.
    passed = run(["python", "src/gate.py", "promote"], project)
    assert passed.stdout.startswith("gate passed: roc_auc ")
    assert float((project / "baseline.txt").read_text()) > 0.6
    again = run(["python", "src/gate.py", "promote"], project, check=False)
    assert again.returncode == 1 and "already promoted?" in again.stderr
    shown = run(["python", "src/gate.py", "diff"], project)
    assert shown.stdout.startswith("metrics diff vs HEAD") and "roc_auc" in shown.stdout
    run(["python", "src/gate.py", "diff", "--rev", "HEAD", "--md", "reports/diff.md"], project)
    assert "| roc_auc" in Path(project / "reports/diff.md").read_text()
