"""kkbox.kinds.rf: scikit-learn's forest, fitted on the valid rows too, saved through skops and
loaded back only when the file holds a forest and the types a forest needs."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io
from sklearn.metrics import roc_auc_score
from sklearn.tree import DecisionTreeClassifier

from cd4ml import params
from cd4ml.io import UserError
from kkbox.kinds import logreg
from kkbox.kinds.rf import KIND, TRUSTED, Settings
from tests.project import ROOT

COMMITTED = params.read(ROOT / "params.yaml")["train"]["rf"]


def small(**changes: object) -> Settings:
    """The committed settings with few trees on one core (fast)."""
    return Settings.model_validate({**COMMITTED, "n_estimators": 10, "n_jobs": 1, **changes})


def frame(n: int = 1000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Feature `a` carries the signal, `b` is noise."""
    rng = np.random.default_rng(seed)
    x = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    y = (x["a"] + 0.3 * rng.normal(size=n) > 0).astype(int).to_numpy()
    return x, y


def fitted(seed: int = 42) -> tuple[object, dict, pd.DataFrame, np.ndarray]:
    x, y = frame()
    model = KIND.build(small(), seed)
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
        "rf",
        "model.skops",
        "skops.io",
        Settings,
    )


def test_build_takes_the_settings_and_the_seed():
    got = KIND.build(small(max_depth=4), seed=9).get_params()
    assert (got["n_estimators"], got["max_depth"], got["random_state"]) == (10, 4, 9)
    assert (got["max_features"], got["max_samples"]) == (
        COMMITTED["max_features"],
        COMMITTED["max_samples"],
    )


def test_fit_learns_from_the_valid_rows_too():
    model, info, x, y = fitted()
    assert info == {}
    assert model._n_samples == 1000  # the 900 rows and the 100 early-stopping rows
    p = KIND.predict(model, x)
    assert p.shape == (len(x),) and ((p >= 0) & (p <= 1)).all()
    assert roc_auc_score(y, p) > 0.9  # it learned the signal


def test_the_seed_makes_the_model_reproducible():
    first, _, x, _ = fitted(seed=1)
    again, _, _, _ = fitted(seed=1)
    np.testing.assert_array_equal(KIND.predict(first, x), KIND.predict(again, x))


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
    tamper(path, "sklearn.tree._classes", "DecisionTreeClassifier")
    with pytest.raises(UserError) as err:
        KIND.load(path)
    assert str(err.value) == (
        f"{path}: holds types this model kind never needs: ['subprocess.Popen']"
    )


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


def test_importances_are_shares_that_sum_to_one():
    model, _, _, _ = fitted()
    shares = KIND.importances(model, ["a", "b"])
    assert list(shares) == ["a", "b"]
    assert sum(shares.values()) == pytest.approx(1.0) and shares["a"] > shares["b"] >= 0


def test_n_jobs_is_all_cores_or_a_count_never_zero():
    assert small(n_jobs=-1).n_jobs == -1
    with pytest.raises(UserError, match=r"train.rf.n_jobs must be >= -1, not 0, got 0$"):
        params.parse(Settings, {**COMMITTED, "n_jobs": 0}, "train.rf")
    assert json.loads(Settings.model_validate(COMMITTED).model_dump_json()) == COMMITTED
