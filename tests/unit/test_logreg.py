"""kkbox.kinds.logreg: the baseline (median-imputed, standardised features, logistic regression),
fitted on the valid rows too, saved through skops and loaded back only when the file holds that
pipeline and the types it needs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import skops.io
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from cd4ml import params
from cd4ml.io import UserError
from kkbox.kinds import rf
from kkbox.kinds.logreg import KIND, Settings
from tests import kinds
from tests.kinds import frame

COMMITTED = kinds.committed("logreg")


def test_build_takes_the_settings_and_the_seed():
    model = KIND.build(Settings(C=0.5, max_iter=50), seed=9)
    assert [name for name, _ in model.steps] == [
        "simpleimputer",
        "standardscaler",
        "logisticregression",
    ]
    got = model[-1].get_params()
    assert (got["C"], got["max_iter"], got["random_state"]) == (0.5, 50, 9)
    assert model[0].strategy == "median"


def test_fit_learns_from_the_valid_rows_too_and_reports_its_iterations():
    model, info, x, y = kinds.fitted(KIND, kinds.small(KIND))
    assert model[1].n_samples_seen_ == 1000  # the 900 rows and the 100 early-stopping rows
    assert 1 <= info["iterations"] <= COMMITTED["max_iter"]
    assert set(info) == {"iterations"}
    p = KIND.predict(model, x)
    assert p.shape == (len(x),) and ((p > 0) & (p < 1)).all()
    assert roc_auc_score(y, p) > 0.9  # it learned the signal


def test_a_feature_missing_in_every_fitted_row_is_kept_not_dropped():
    x, y = frame()
    x["c"] = np.nan
    model = KIND.build(kinds.small(KIND), 1)
    KIND.fit(model, x[:900], y[:900], (x[900:], y[900:]))
    assert KIND.predict(model, x).shape == (len(x),)
    assert list(KIND.importances(model, list(x.columns))) == ["a", "b", "c"]


def test_load_refuses_a_file_of_another_kind(tmp_path):
    x, y = frame(200)
    forest = rf.KIND.build(
        rf.Settings(
            n_estimators=2,
            max_depth=2,
            min_samples_leaf=1,
            max_features=1.0,
            max_samples=1.0,
            n_jobs=1,
        ),
        seed=1,
    )
    rf.KIND.fit(forest, x[:150].fillna(0), y[:150], (x[150:].fillna(0), y[150:]))
    path = tmp_path / KIND.file
    rf.KIND.save(forest, path)
    with pytest.raises(UserError) as err:
        KIND.load(path)
    # A forest's trees are a type no pipeline of this kind holds: refused before loading.
    assert str(err.value) == (
        f"{path}: holds types this model kind never needs: ['sklearn.tree._tree.Tree']"
    )


def test_load_refuses_a_file_of_trusted_types_that_is_no_pipeline(tmp_path):
    x, _ = frame(200)
    path = tmp_path / KIND.file
    skops.io.dump(StandardScaler().fit(x), path)
    with pytest.raises(UserError) as err:
        KIND.load(path)
    assert str(err.value) == f"{path}: holds a StandardScaler, not a Pipeline"


def test_importances_are_shares_of_the_standardised_coefficients():
    model, _, x, _ = kinds.fitted(KIND, kinds.small(KIND))
    shares = KIND.importances(model, list(x.columns))
    assert list(shares) == ["a", "b", "c"]
    assert sum(shares.values()) == pytest.approx(1.0)
    # `b` is 100 times `a`'s scale but noise: standardised, `a` carries the weight.
    assert shares["a"] > 0.8 and min(shares.values()) >= 0


def test_settings_are_bounded():
    for key, bad in (("C", 0.0), ("max_iter", 0)):
        with pytest.raises(UserError, match=rf"^params.yaml: train.logreg.{key} must be "):
            params.parse(Settings, {**COMMITTED, key: bad}, "train.logreg")
    assert json.loads(kinds.small(KIND).model_dump_json()) == COMMITTED
