"""kkbox.kinds.rf: scikit-learn's forest, fitted on the valid rows too, saved through skops and
loaded back only when the file holds a forest and the types a forest needs."""

from __future__ import annotations

import json

import pytest
import skops.io
from sklearn.metrics import roc_auc_score
from sklearn.tree import DecisionTreeClassifier

from cd4ml import params
from cd4ml.io import UserError
from kkbox.kinds import logreg
from kkbox.kinds.rf import KIND, Settings
from tests import kinds
from tests.kinds import frame

COMMITTED = kinds.committed("rf")


def test_build_takes_the_settings_and_the_seed():
    got = KIND.build(kinds.small(KIND, max_depth=4), seed=9).get_params()
    assert (got["n_estimators"], got["max_depth"], got["random_state"]) == (10, 4, 9)
    assert (got["max_features"], got["max_samples"]) == (
        COMMITTED["max_features"],
        COMMITTED["max_samples"],
    )


def test_fit_learns_from_the_valid_rows_too():
    model, info, x, y = kinds.fitted(KIND, kinds.small(KIND))
    assert info == {}
    assert model._n_samples == 1000  # the 900 rows and the 100 early-stopping rows
    p = KIND.predict(model, x)
    assert p.shape == (len(x),) and ((p >= 0) & (p <= 1)).all()
    assert roc_auc_score(y, p) > 0.9  # it learned the signal


def test_load_refuses_a_file_of_another_kind(tmp_path):
    x, y = frame(200)
    other = logreg.KIND.build(logreg.Settings(C=1.0, max_iter=100), seed=1)
    logreg.KIND.fit(other, x[:150], y[:150], (x[150:], y[150:]))
    path = tmp_path / KIND.file
    logreg.KIND.save(other, path)
    with pytest.raises(UserError) as err:
        KIND.load(path)
    assert str(err.value) == f"{path}: holds a Pipeline, not a RandomForestClassifier"


def test_load_refuses_a_file_of_trusted_types_that_is_no_forest(tmp_path):
    x, y = frame(200)
    path = tmp_path / KIND.file
    skops.io.dump(DecisionTreeClassifier(max_depth=2).fit(x, y), path)
    with pytest.raises(UserError) as err:
        KIND.load(path)
    assert str(err.value) == (
        f"{path}: holds a DecisionTreeClassifier, not a RandomForestClassifier"
    )


def test_n_jobs_is_all_cores_or_a_count_never_zero():
    assert kinds.small(KIND, n_jobs=-1).n_jobs == -1
    with pytest.raises(UserError, match=r"train.rf.n_jobs must be >= -1, not 0, got 0$"):
        params.parse(Settings, {**COMMITTED, "n_jobs": 0}, "train.rf")
    assert json.loads(Settings.model_validate(COMMITTED).model_dump_json()) == COMMITTED
