"""kkbox.model: both model families from the typed params, fit, save, load, importances."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from cd4ml import params
from kkbox import model
from cd4ml.io import UserError
from tests.project import ROOT

TRAIN = params.load(ROOT / "params.yaml").train


def small(kind: str) -> params.Train:
    """The committed train section with few trees (fast)."""
    xgb = dataclasses.replace(TRAIN.xgb, n_estimators=20, n_jobs=1)
    rf = dataclasses.replace(TRAIN.rf, n_estimators=10, n_jobs=1)
    return dataclasses.replace(TRAIN, model=kind, xgb=xgb, rf=rf)


def frame(n: int = 2000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    y = (x["a"] + 0.3 * rng.normal(size=n) > 0).astype(int).to_numpy()
    return x, y


@pytest.mark.parametrize("kind", ["xgb", "rf"])
def test_fit_predict_save_load(tmp_path, kind):
    x, y = frame()
    estimator = model.build(small(kind))
    info = model.fit(estimator, x[:1600], y[:1600], (x[1600:], y[1600:]))
    p = model.predict_proba(estimator, x)
    assert p.shape == (len(x),) and ((p >= 0) & (p <= 1)).all()
    assert np.corrcoef(p, x["a"])[0, 1] > 0.5  # it learned the signal
    if kind == "xgb":
        assert info["device"] == "cpu" and 0 <= info["best_iteration"] < 20
        assert 0.5 < info["best_valid_auc"] <= 1.0
    else:
        assert info == {}
    model.save(estimator, tmp_path / "m.joblib")
    again = model.load(tmp_path / "m.joblib")
    np.testing.assert_array_equal(model.predict_proba(again, x), p)
    shares = model.importances(again, ["a", "b"])
    assert sum(shares.values()) == pytest.approx(1.0) and shares["a"] > shares["b"]


def test_the_seed_makes_the_model_reproducible():
    x, y = frame()
    runs = []
    for _ in range(2):
        estimator = model.build(small("xgb"))
        model.fit(estimator, x[:1600], y[:1600], (x[1600:], y[1600:]))
        runs.append(model.predict_proba(estimator, x))
    np.testing.assert_array_equal(*runs)


def test_xgboost_stops_early_on_the_given_rows_and_the_forest_learns_from_them_too():
    x, y = frame(1000)
    estimator = model.build(small("xgb"))
    info = model.fit(estimator, x[:900], y[:900], (x[900:], y[900:]))
    assert estimator.n_features_in_ == 2 and estimator.best_iteration is not None
    valid_auc = roc_auc_score(y[900:], model.predict_proba(estimator, x[900:]))
    assert info["best_valid_auc"] == pytest.approx(valid_auc, abs=1e-6)
    forest = model.build(small("rf"))
    model.fit(forest, x[:900], y[:900], (x[900:], y[900:]))
    assert forest._n_samples == 1000  # fitted on the 900 rows and the 100 early-stopping rows


def test_load_names_the_file_and_the_fix(tmp_path):
    with pytest.raises(UserError, match=r"m.joblib: model not found; run `dvc repro train`"):
        model.load(tmp_path / "m.joblib")
    (tmp_path / "m.joblib").write_bytes(b"")
    with pytest.raises(UserError, match=r"model file is empty \(0 bytes\)"):
        model.load(tmp_path / "m.joblib")
    (tmp_path / "m.joblib").write_bytes(b"not a pickle at all")
    with pytest.raises(UserError, match=r"model file is corrupt"):
        model.load(tmp_path / "m.joblib")


def test_a_gpu_device_without_a_gpu_is_a_clear_error():
    import xgboost

    if xgboost.build_info().get("USE_CUDA"):
        try:
            model.check_device("cuda")
        except UserError as err:
            assert "params.yaml: train.xgb.device is 'cuda'" in str(err)
        else:
            pytest.skip("a GPU is usable here: nothing to refuse")
    else:
        with pytest.raises(UserError, match="built without CUDA"):
            model.check_device("cuda")
    model.check_device("cpu")  # never fails
