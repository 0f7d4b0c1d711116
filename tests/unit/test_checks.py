"""cd4ml.checks: the model sanity checks on tiny arrays, their settings, and the cross-validation
of fresh models of the problem's kinds."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cd4ml import checks as S
from cd4ml import params
from cd4ml.io import UserError
from kkbox import PROBLEM
from tests.bundles import small
from tests.project import ROOT

SANITY = {
    "calibration_tolerance": 0.05,
    "min_roc_auc": 0.55,
    "cv_folds": 3,
    "cv_max_deviation": 0.1,
    "cv_max_rows": 300,
    "seed": 7,
}


def test_the_committed_sanity_settings_parse():
    settings = params.section(ROOT / "params.yaml", "sanity", S.Sanity)
    assert settings.cv_max_rows >= 10 * settings.cv_folds


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"cv_folds": 5, "cv_max_rows": 40},
            "params.yaml: sanity.cv_max_rows=40 is too small for sanity.cv_folds=5; use at "
            "least 50",
        ),
        ({"cv_max_rows": 10}, "params.yaml: sanity.cv_max_rows must be >= 20, got 10"),
        ({"cv_folds": 1}, "params.yaml: sanity.cv_folds must be in [2, 100], got 1"),
        ({"min_roc_auc": 1.5}, "params.yaml: sanity.min_roc_auc must be "),
        ({"cv_max_rows": 1000.0}, "params.yaml: sanity.cv_max_rows must be an integer"),
    ],
)
def test_bad_sanity_settings_are_one_line_naming_the_key(change, message):
    with pytest.raises(UserError) as err:
        params.parse(S.Sanity, {**SANITY, **change}, "sanity", "params.yaml")
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def _features(n: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows with a signal in `a`, noise in `b`."""
    rng = np.random.default_rng(seed)
    x = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    y = (x["a"] + rng.normal(0, 0.7, n) > 0).astype(np.int8).to_numpy()
    return x, y


@pytest.mark.parametrize("kind", ["xgb", "logreg"])
def test_cv_check_cross_validates_fresh_models_on_a_capped_sample(kind):
    x, y = _features(600)
    settings = S.Sanity(**SANITY)
    check = S.cv_check(x, y, PROBLEM.kinds, small(kind), settings, valid_fraction=0.2)
    assert check.name == "cv_stable" and check.threshold == 0.1
    assert check.details["folds"] == 3 and len(check.details["fold_auc"]) == 3
    assert check.details["rows"] == 300 and check.details["training_rows"] == 600
    assert check.details["sampled"] is True
    assert all(auc > 0.7 for auc in check.details["fold_auc"].values())  # it learned `a`
    assert check.passed and check.value <= 0.1
    again = S.cv_check(x, y, PROBLEM.kinds, small(kind), settings, valid_fraction=0.2)
    assert again.as_dict() == check.as_dict()  # the sample, the folds and the fits are seeded


def test_cv_check_uses_every_row_under_the_cap_and_fails_an_unstable_model():
    x, y = _features(200, seed=1)
    strict = S.Sanity(**{**SANITY, "cv_max_deviation": 0.0})
    check = S.cv_check(x, y, PROBLEM.kinds, small("logreg"), strict, valid_fraction=0.1)
    assert check.details["rows"] == 200 and check.details["sampled"] is False
    assert not check.passed and check.value > 0  # folds never agree to the last digit


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


def test_calibration_compares_the_mean_prediction_with_the_observed_rate():
    y = np.array([1, 1, 1, 0])  # 75 % positive
    p = np.array([0.9, 0.8, 0.7, 0.6])  # mean 0.75, yet every row is above 0.5
    check = S.calibration(p, y, tolerance=0.05, decision_threshold=0.5)
    assert check.passed and check.value == pytest.approx(0.0)
    assert check.details["mean_prediction"] == pytest.approx(0.75)
    assert check.details["observed_positive_rate"] == 0.75
    assert check.details["predicted_positive_rate"] == 1.0  # information only
    assert check.details["decision_threshold"] == 0.5


def test_miscalibrated_predictions_fail():
    y = np.array([1, 0, 0, 0])
    check = S.calibration(np.array([0.6, 0.5, 0.4, 0.5]), y, 0.05, decision_threshold=0.5)
    assert not check.passed and check.value == pytest.approx(0.25)
    within = S.calibration(np.array([0.3, 0.3, 0.2, 0.2]), y, 0.05, 0.5, {"training": 0.3})
    assert within.passed and within.value == pytest.approx(0.0) and within.details["training"]


def test_calibration_of_nan_predictions_fails_and_is_written_as_null():
    check = S.calibration(np.array([0.2, np.nan]), np.array([0, 1]), 0.05, 0.5)
    entry = check.as_dict()
    assert entry["value"] is None and entry["passed"] is False
    json.dumps(entry, allow_nan=False)


def test_roc_auc_floor():
    y = np.array([0, 0, 1, 1])
    good = S.roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), y, min_auc=0.55)
    assert good.passed and good.value == pytest.approx(0.75) and good.threshold == 0.55
    inverted = S.roc_auc(np.array([0.9, 0.6, 0.65, 0.2]), y, min_auc=0.55)
    assert not inverted.passed and inverted.value == pytest.approx(0.25)
    assert not S.roc_auc(np.full(4, 0.5), y, min_auc=0.55).passed  # a tie everywhere: 0.5


@pytest.mark.parametrize(
    "p, y", [([0.2, np.nan, 0.4, 0.9], [0, 1, 0, 1]), ([0.2, 0.3, 0.4], [1, 1, 1])]
)
def test_undefined_roc_auc_fails(p, y):
    check = S.roc_auc(np.array(p), np.array(y), min_auc=0.55)
    assert not check.passed and check.as_dict()["value"] is None


def test_prediction_checks_run_every_check_of_the_eval_rows_in_report_order():
    p, y = np.array([0.2, 0.7, 0.4, 0.9]), np.array([0, 1, 0, 1])
    checks = S.prediction_checks(p, y, 4, 0.05, 0.55, 0.5, {"training_positive_rate": 0.5})
    assert [c.name for c in checks] == [
        "probabilities_valid",
        "one_prediction_per_row",
        "not_constant",
        "calibration",
        "roc_auc",
    ]
    assert all(c.passed for c in checks)
    assert checks[3].details["training_positive_rate"] == 0.5
    wrong = S.prediction_checks(p, y, 5, 0.05, 0.55, 0.5)
    assert [c.name for c in wrong if not c.passed] == ["one_prediction_per_row"]


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
    # No eval rows give an infinite calibration gap; JSON has no inf.
    entry = S.calibration(np.array([]), np.array([]), 0.05, 0.5).as_dict()
    assert entry["value"] is None and entry["passed"] is False
    json.dumps(entry, allow_nan=False)
