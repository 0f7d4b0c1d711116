"""kkbox.kinds.xgb: XGBoost early-stopped on the valid rows, saved as UBJSON and loaded back only
when it is a binary:logistic booster; a GPU asked for and not usable is a clear error."""

from __future__ import annotations

import numpy as np
import pytest
import xgboost
from sklearn.metrics import roc_auc_score

from cd4ml import params
from cd4ml.io import UserError
from kkbox.kinds.xgb import KIND, Settings, check_device
from tests import kinds
from tests.kinds import frame

COMMITTED = kinds.committed("xgb")


def test_build_takes_the_settings_and_the_seed():
    model = KIND.build(kinds.small(KIND, max_depth=3, n_jobs=0), seed=9)
    got = model.get_params()
    assert (got["n_estimators"], got["max_depth"], got["random_state"]) == (20, 3, 9)
    assert got["n_jobs"] is None  # 0: all cores
    assert (got["objective"], got["tree_method"], got["device"]) == (
        "binary:logistic",
        "hist",
        "cpu",
    )


def test_fit_stops_early_on_the_valid_rows_and_reports_it():
    model, info, x, y = kinds.fitted(KIND, kinds.small(KIND))
    assert model.n_features_in_ == 3
    assert info["device"] == "cpu" and 0 <= info["best_iteration"] < 20
    valid_auc = roc_auc_score(y[900:], KIND.predict(model, x[900:]))
    assert info["best_valid_auc"] == pytest.approx(valid_auc, abs=1e-6)
    p = KIND.predict(model, x)
    assert p.shape == (len(x),) and ((p > 0) & (p < 1)).all()
    assert roc_auc_score(y, p) > 0.9  # it learned the signal


def test_save_and_load_give_the_same_predictions(tmp_path):
    model, info, x, _ = kinds.fitted(KIND, kinds.small(KIND))
    path = tmp_path / KIND.file
    KIND.save(model, path)
    assert path.read_bytes()[:1] == b"{"  # UBJSON, not a pickle
    again = KIND.load(path)
    np.testing.assert_array_equal(KIND.predict(again, x), KIND.predict(model, x))
    assert again.best_iteration == info["best_iteration"]  # kept in the file


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"\x80\x04K\x01.", "no UBJSON or JSON object"),  # a pickle of the number 1
        (b"", "no UBJSON or JSON object"),
        (b'{"a": 1}', ""),  # JSON, but no model
        (None, ""),  # a real model file cut short
    ],
    ids=["pickle", "empty", "json", "truncated"],
)
def test_load_refuses_a_file_that_is_no_xgboost_model(tmp_path, content, why):
    path = tmp_path / KIND.file
    if content is None:
        KIND.save(kinds.fitted(KIND, kinds.small(KIND))[0], path)
        content = path.read_bytes()[:100]
    path.write_bytes(content)
    with pytest.raises(UserError) as err:
        KIND.load(path)
    message = str(err.value)
    assert message.startswith(f"{path}: not an XGBoost model ({why}") and "\n" not in message


def test_load_refuses_a_booster_of_another_objective(tmp_path):
    x, y = frame(200)
    regressor = xgboost.XGBRegressor(n_estimators=3, n_jobs=1).fit(x, y.astype(float))
    path = tmp_path / KIND.file
    regressor.save_model(path)
    with pytest.raises(UserError) as err:
        KIND.load(path)
    assert str(err.value) == f"{path}: an XGBoost reg:squarederror model, not binary:logistic"


def test_cpu_is_never_refused():
    check_device("cpu")


def test_a_gpu_that_xgboost_cannot_use_is_a_clear_error():
    if not xgboost.build_info().get("USE_CUDA"):
        with pytest.raises(UserError, match=r"built without CUDA .*train.xgb.device: cpu$"):
            check_device("cuda")
        return
    try:
        check_device("cuda:99")  # no machine has a hundredth GPU
    except UserError as err:
        message = str(err)
        assert message.startswith("params.yaml: train.xgb.device is 'cuda:99' but XGBoost ")
        assert "\n" not in message
    else:
        pytest.fail("cuda:99 was accepted")


def test_device_settings_are_cpu_or_cuda():
    assert kinds.small(KIND, device="cuda:1").device == "cuda:1"
    for bad in ("gpu", "cuda:", "CPU", "cuda:x"):
        with pytest.raises(
            UserError, match=r"train.xgb.device must be cpu, cuda or cuda:<ordinal>"
        ):
            params.parse(Settings, {**COMMITTED, "device": bad}, "train.xgb")
