"""kkbox.kinds.logreg: the baseline (median-imputed, standardised features, logistic regression),
fitted on the valid rows too, saved through skops and loaded back only when the file holds that
pipeline and the types it needs."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from cd4ml import params
from cd4ml.io import UserError
from kkbox.kinds import rf
from kkbox.kinds.logreg import KIND, TRUSTED, Settings
from tests.project import ROOT

COMMITTED = params.read(ROOT / "params.yaml")["train"]["logreg"]


def frame(n: int = 1000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Feature `a` carries the signal, `b` is noise on another scale, `c` is missing in part."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    x = pd.DataFrame({"a": a, "b": 100 * rng.normal(size=n), "c": rng.normal(size=n)})
    x.loc[::7, "c"] = np.nan
    y = (a + 0.3 * rng.normal(size=n) > 0).astype(int)
    return x, y


def fitted(seed: int = 42) -> tuple[object, dict, pd.DataFrame, np.ndarray]:
    x, y = frame()
    model = KIND.build(Settings.model_validate(COMMITTED), seed)
    info = KIND.fit(model, x[:900], y[:900], (x[900:], y[900:]))
    return model, info, x, y


def tamper(path: Path, module: str, name: str) -> None:
    """Rewrite a skops file so that its first object of `module.name` is a subprocess.Popen."""
    with zipfile.ZipFile(path) as src:
        files = {item: src.read(item) for item in src.namelist()}
    schema = json.loads(files["schema.json"])
    todo = [schema]
    while todo:
        node = todo.pop(0)
        if isinstance(node, dict):
            if (node.get("__module__"), node.get("__class__")) == (module, name):
                node.update({"__module__": "subprocess", "__class__": "Popen"})
                break
            todo.extend(node.values())
        elif isinstance(node, list):
            todo.extend(node)
    else:
        raise AssertionError(f"no {module}.{name} in {path}")
    files["schema.json"] = json.dumps(schema).encode()
    with zipfile.ZipFile(path, "w") as out:
        for item, data in files.items():
            out.writestr(item, data)


def test_the_kind_names_its_file_library_and_settings():
    assert (KIND.name, KIND.file, KIND.library, KIND.Settings) == (
        "logreg",
        "model.skops",
        "skops.io",
        Settings,
    )


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
    model, info, x, y = fitted()
    assert model[1].n_samples_seen_ == 1000  # the 900 rows and the 100 early-stopping rows
    assert 1 <= info["iterations"] <= COMMITTED["max_iter"]
    assert set(info) == {"iterations"}
    p = KIND.predict(model, x)
    assert p.shape == (len(x),) and ((p > 0) & (p < 1)).all()
    assert roc_auc_score(y, p) > 0.9  # it learned the signal


def test_a_feature_missing_in_every_fitted_row_is_kept_not_dropped():
    x, y = frame()
    x["c"] = np.nan
    model = KIND.build(Settings.model_validate(COMMITTED), 1)
    KIND.fit(model, x[:900], y[:900], (x[900:], y[900:]))
    assert KIND.predict(model, x).shape == (len(x),)
    assert list(KIND.importances(model, list(x.columns))) == ["a", "b", "c"]


def test_save_and_load_give_the_same_predictions(tmp_path):
    model, _, x, _ = fitted()
    path = tmp_path / KIND.file
    KIND.save(model, path)
    assert zipfile.is_zipfile(path)  # skops' format, not a pickle
    assert set(skops.io.get_untrusted_types(file=path)) <= set(TRUSTED)
    again = KIND.load(path)
    np.testing.assert_array_equal(KIND.predict(again, x), KIND.predict(model, x))


def test_load_refuses_a_foreign_file(tmp_path):
    path = tmp_path / KIND.file
    path.write_bytes(b"\x80\x04K\x01.")  # a pickle of the number 1
    with pytest.raises(UserError) as err:
        KIND.load(path)
    assert str(err.value) == f"{path}: not a skops file (BadZipFile)"


def test_load_refuses_a_tampered_file_before_it_loads_anything(tmp_path):
    model, _, _, _ = fitted()
    path = tmp_path / KIND.file
    KIND.save(model, path)
    tamper(path, "sklearn.preprocessing._data", "StandardScaler")
    with pytest.raises(UserError) as err:
        KIND.load(path)
    assert str(err.value) == (
        f"{path}: holds types this model kind never needs: ['subprocess.Popen']"
    )


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
    model, _, x, _ = fitted()
    shares = KIND.importances(model, list(x.columns))
    assert list(shares) == ["a", "b", "c"]
    assert sum(shares.values()) == pytest.approx(1.0)
    # `b` is 100 times `a`'s scale but noise: standardised, `a` carries the weight.
    assert shares["a"] > 0.8 and min(shares.values()) >= 0


def test_settings_are_bounded():
    for key, bad in (("C", 0.0), ("max_iter", 0)):
        with pytest.raises(UserError, match=rf"^params.yaml: train.logreg.{key} must be "):
            params.parse(Settings, {**COMMITTED, key: bad}, "train.logreg")
    assert json.loads(Settings.model_validate(COMMITTED).model_dump_json()) == COMMITTED
