"""Model sanity checks: the pure checks on tiny arrays; on data at 25, 50 and 75 % positives a
good model passes them all and a broken one fails; a failing check stops `dvc repro`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pytest
import yaml
from xgboost import XGBClassifier

from kkbox import features, model, synth
from kkbox import sanity as S
from kkbox.io import write_csv
from kkbox.raw import read_table
from project import ROOT, copy_project, run


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


# ---------------------------------------------------------------------------------------------
# Acceptance: the checks the stage runs, on a real (small) model of generated data at three base
# rates. Built as the stages build it: CSV written and parsed, split by time, features fitted on
# the training part; only the model is smaller than params.yaml's.

RAW = ("members.csv", "songs.csv", "song_extra_info.csv", "train.csv")


def _params() -> dict:
    with (ROOT / "params.yaml").open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _features(data: Path, params: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train and eval features with their target, as split and preprocess make them."""
    raw = {name: read_table(data / name, name) for name in RAW}
    plays = raw["train.csv"]
    member_key = features.keys_of(plays["msno"], raw["members.csv"]["msno"])
    song_key = features.keys_of(plays["song_id"], raw["songs.csv"]["song_id"])
    # split writes, and preprocess reads, the play context as dictionaries (Categoricals).
    context = pd.DataFrame(
        {c: pc.dictionary_encode(plays[c]).to_pandas() for c in features.SOURCE}
    )
    joined = features.join_plays(
        context,
        member_key,
        song_key,
        features.member_table(raw["members.csv"].to_pandas()),
        features.song_table(
            raw["songs.csv"].to_pandas(types_mapper=pd.ArrowDtype),
            raw["song_extra_info.csv"].to_pandas(types_mapper=pd.ArrowDtype),
        ),
    )
    joined["target"] = plays["target"].to_numpy()
    cut = len(joined) - round(len(joined) * params["split"]["eval_fraction"])
    train, evaluation = joined.iloc[:cut], joined.iloc[cut:].reset_index(drop=True)
    pre = params["preprocess"]
    encoder = features.fit(train, pre["min_category_count"], float(pre["target_smoothing"]))
    folds = features.assign_folds(len(train), pre["target_folds"], pre["seed"])
    out = []
    for part, oof in ((train, folds), (evaluation, None)):
        x = features.transform(part, encoder, oof_folds=oof)
        x["target"] = part["target"].to_numpy()
        out.append(x)
    return out[0], out[1]


def _small_xgb(params: dict) -> XGBClassifier:
    """params.yaml's XGBoost with fewer trees (the tiny data stops early by ~40 anyway)."""
    p = params["train"]["xgb"]
    return XGBClassifier(
        n_estimators=60,
        learning_rate=p["learning_rate"],
        max_depth=p["max_depth"],
        min_child_weight=p["min_child_weight"],
        subsample=p["subsample"],
        colsample_bytree=p["colsample_bytree"],
        max_bin=p["max_bin"],
        early_stopping_rounds=p["early_stopping_rounds"],
        n_jobs=2,
        tree_method="hist",
        objective="binary:logistic",
        eval_metric="auc",
        random_state=params["train"]["seed"],
    )


def _fit_predict(params: dict, x: pd.DataFrame, y: np.ndarray, x_test: pd.DataFrame) -> np.ndarray:
    estimator = _small_xgb(params)
    model.fit(estimator, x, y, params["train"]["valid_fraction"])
    return model.predict_proba(estimator, x_test)


def _checks(params: dict, p: np.ndarray, y: np.ndarray) -> list[S.Check]:
    """The checks of the stage's eval predictions, with params.yaml's thresholds."""
    sanity = params["sanity"]
    return S.prediction_checks(
        p,
        y,
        len(y),
        sanity["calibration_tolerance"],
        sanity["min_roc_auc"],
        params["evaluate"]["threshold"],
    )


@pytest.fixture(scope="module", params=[0.25, 0.5, 0.75], ids=lambda r: f"{r:.0%}")
def at_rate(request, tmp_path_factory) -> dict:
    """Data at one base rate: its features, a good model's eval predictions and the params."""
    params = _params()
    data = tmp_path_factory.mktemp("rate") / "data"
    data.mkdir()
    tables = synth.generate(
        synth.SCALES["tiny"], params["generate"]["seed"], positive_rate=request.param
    )
    for name in RAW:
        write_csv(tables[name], data / name)
    train, evaluation = _features(data, params)
    x, y = train[features.FEATURES], train["target"].to_numpy()
    p = _fit_predict(params, x, y, evaluation[features.FEATURES])
    return {
        "rate": request.param,
        "params": params,
        "train": train,
        "y": evaluation["target"].to_numpy(),
        "p": p,
    }


def test_a_good_model_passes_every_check_whatever_the_base_rate(at_rate):
    params, train, y, p = at_rate["params"], at_rate["train"], at_rate["y"], at_rate["p"]
    assert abs(train["target"].mean() - at_rate["rate"]) < 0.02
    sanity = params["sanity"]
    rows = S.subsample(len(train), sanity["cv_max_rows"], sanity["seed"])
    aucs = S.cross_validate(
        train[features.FEATURES].iloc[rows].reset_index(drop=True),
        train["target"].to_numpy()[rows],
        lambda x_fit, y_fit, x_test: _fit_predict(params, x_fit, y_fit, x_test),
        sanity["cv_folds"],
        sanity["seed"],
    )
    checks = [*_checks(params, p, y), S.cv_stable(aucs, sanity["cv_max_deviation"])]
    assert S.failure_message(checks) is None
    calibration = checks[3].details
    # What the old gate held against training's rate: far off at 25 and 75 %, and harmless.
    if at_rate["rate"] != 0.5:
        share = calibration["predicted_positive_rate"]
        assert abs(share - calibration["observed_positive_rate"]) > 0.05


@pytest.mark.parametrize(
    "broken, fails",
    [
        ("constant", {"not_constant", "roc_auc"}),
        ("shuffled", {"roc_auc"}),
        ("inverted", {"roc_auc"}),
    ],
)
def test_a_broken_model_fails_a_check_whatever_the_base_rate(at_rate, broken, fails):
    p, y = at_rate["p"], at_rate["y"]
    wrong = {
        # Calibrated on average, but says nothing about any row.
        "constant": np.full(len(p), at_rate["train"]["target"].mean()),
        "shuffled": np.random.default_rng(0).permutation(p),
        "inverted": 1.0 - p,
    }[broken]
    checks = _checks(at_rate["params"], wrong, y)
    failed = {c.name for c in checks if not c.passed}
    assert fails <= failed
    if broken == "inverted" and at_rate["rate"] != 0.5:
        assert "calibration" in failed  # its mean is 1 - the rate


@pytest.mark.slow
def test_a_failing_sanity_check_stops_dvc_repro(tmp_path):
    project = copy_project(tmp_path / "repo")
    params_path = project / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    # Impossible thresholds; a small CV sample keeps the run short.
    params["sanity"].update(calibration_tolerance=0.0, cv_max_deviation=0.0, cv_max_rows=3000)
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    run(["python", "src/generate.py", "--scale", "tiny", "--out", "data"], project)
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
    assert cv["rows"] == 3000 and cv["training_rows"] == 24_000 and cv["sampled"]
    for name in ("probabilities_valid", "one_prediction_per_row", "not_constant", "roc_auc"):
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
