"""cd4ml.model: the train section made of the problem's kinds, the model folder (the kind's own
file and model.json), its errors, and the features files."""

from __future__ import annotations

import json
from typing import Literal, get_args

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.metrics import roc_auc_score

from cd4ml import model, params
from cd4ml.io import UserError, write_parquet
from kkbox import PROBLEM
from tests.project import ROOT

KINDS = PROBLEM.kinds
TRAIN = model.train_settings(KINDS)


def settings(kind: str) -> object:
    """The committed train section, set to `kind`."""
    return params.section(ROOT / "params.yaml", "train", TRAIN).model_copy(update={"model": kind})


def frame(n: int = 600, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    y = (x["a"] + 0.3 * rng.normal(size=n) > 0).astype(int).to_numpy()
    return x, y


def fitted(kind: str = "logreg") -> tuple[model.Model, pd.DataFrame]:
    x, y = frame()
    found = model.build(KINDS, settings(kind))
    found.kind.fit(found.estimator, x[:500], y[:500], (x[500:], y[500:]))
    return found, x


def test_the_train_section_has_the_model_the_seed_and_one_section_per_kind():
    fields = TRAIN.model_fields
    assert list(fields) == ["model", "seed", *KINDS]
    assert fields["model"].annotation == Literal[tuple(KINDS)]
    assert set(get_args(fields["model"].annotation)) == {"xgb", "rf", "logreg"}
    for name, kind in KINDS.items():
        assert fields[name].annotation is kind.Settings
    assert issubclass(TRAIN, params.Section)


def test_the_train_section_follows_the_kinds_it_is_given():
    only = model.train_settings({"logreg": KINDS["logreg"]})
    assert list(only.model_fields) == ["model", "seed", "logreg"]
    committed = params.read(ROOT / "params.yaml")["train"]
    with pytest.raises(UserError, match=r"unknown key train.xgb"):
        params.parse(only, {**committed, "model": "logreg"}, "train")
    with pytest.raises(UserError, match=r"train.model must be one of logreg, got 'xgb'"):
        params.parse(only, {"model": "xgb", "seed": 1, "logreg": committed["logreg"]}, "train")


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_build_makes_the_kind_asked_for_with_its_settings_and_the_seed(kind):
    train = settings(kind)
    built = model.build(KINDS, train)
    assert built.kind is KINDS[kind]
    params_of = built.estimator.get_params()
    seeds = [v for k, v in params_of.items() if k.endswith("random_state")]
    assert seeds and set(seeds) == {train.seed}


def test_a_model_predicts_and_ranks_its_features_through_its_kind():
    found, x = fitted()
    p = found.predict(x)
    np.testing.assert_array_equal(p, found.kind.predict(found.estimator, x))
    assert p.shape == (len(x),) and ((p > 0) & (p < 1)).all()
    shares = found.importances(["a", "b"])
    assert sum(shares.values()) == pytest.approx(1.0) and shares["a"] > shares["b"]


def test_save_and_load_the_model_folder(tmp_path):
    found, x = fitted()
    folder = tmp_path / "models" / "model"
    model.save(folder, found, {"rows": 500, "features": ["a", "b"]})
    assert sorted(p.name for p in folder.iterdir()) == [model.INFO, found.kind.file]
    info = model.read_info(folder)
    assert info == {"kind": "logreg", "file": "model.skops", "rows": 500, "features": ["a", "b"]}
    again = model.load(folder, KINDS)
    assert again.kind is found.kind
    np.testing.assert_array_equal(again.predict(x), found.predict(x))
    # Saved again, the folder is swapped in whole: nothing of the old one stays.
    (folder / "stale.txt").write_text("old")
    model.save(folder, found, {"rows": 1})
    assert sorted(p.name for p in folder.iterdir()) == [model.INFO, found.kind.file]
    assert [p.name for p in folder.parent.iterdir()] == ["model"]  # no temp folder left


def test_a_model_of_another_kind_saves_its_own_file(tmp_path):
    found, x = fitted("xgb")
    model.save(tmp_path / "m", found, {})
    assert (tmp_path / "m" / "model.ubj").is_file() and not (
        tmp_path / "m" / "model.skops"
    ).exists()
    np.testing.assert_array_equal(model.load(tmp_path / "m", KINDS).predict(x), found.predict(x))


def test_read_info_names_the_file_and_the_fix(tmp_path):
    path = tmp_path / model.INFO
    with pytest.raises(UserError) as err:
        model.read_info(tmp_path)
    assert str(err.value) == f"{path}: not found; run `dvc repro train`"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(
        UserError, match=r"model.json: not valid JSON .*; rerun `dvc repro -f train`$"
    ):
        model.read_info(tmp_path)
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(UserError, match=r"model.json: not valid JSON"):
        model.read_info(tmp_path)
    for text in ('{"file": "model.ubj"}', "[1, 2]"):
        path.write_text(text, encoding="utf-8")
        with pytest.raises(UserError) as err:
            model.read_info(tmp_path)
        assert str(err.value) == f"{path}: names no model kind; rerun `dvc repro -f train`"


def test_load_names_an_unknown_kind_and_a_missing_or_empty_file(tmp_path):
    found, _ = fitted()
    folder = tmp_path / "model"
    model.save(folder, found, {})
    info = json.loads((folder / model.INFO).read_text(encoding="utf-8"))
    (folder / model.INFO).write_text(json.dumps({**info, "kind": "svm"}), encoding="utf-8")
    with pytest.raises(UserError) as err:
        model.load(folder, KINDS)
    assert str(err.value) == (
        f"{folder / model.INFO}: model kind 'svm' is not one of the problem's "
        "['logreg', 'rf', 'xgb']"
    )
    (folder / model.INFO).write_text(json.dumps(info), encoding="utf-8")
    (folder / "model.skops").write_bytes(b"")
    with pytest.raises(UserError, match=r"model.skops: model file is empty \(0 bytes\)"):
        model.load(folder, KINDS)
    (folder / "model.skops").unlink()
    with pytest.raises(UserError, match=r"model.skops: model not found; run `dvc repro train`"):
        model.load(folder, KINDS)


def test_kind_of_gives_the_kind_or_names_the_file():
    assert model.kind_of(KINDS, "rf", ROOT / "x.json") is KINDS["rf"]
    with pytest.raises(UserError, match=r"x.json: model kind None is not one of the problem's"):
        model.kind_of(KINDS, None, ROOT / "x.json")


def test_read_features_splits_the_target_off(tmp_path):
    table = pa.table({"a": [0.5, 1.5, 2.5], "b": [1, 2, 3], model.TARGET: [0, 1, 1]})
    write_parquet(table, tmp_path / "train.parquet")
    x, y = model.read_features(tmp_path / "train.parquet")
    assert list(x.columns) == ["a", "b"] and x["a"].tolist() == [0.5, 1.5, 2.5]
    assert y.tolist() == [0, 1, 1] and isinstance(y, np.ndarray)


# --- the simple baseline evaluate scores beside the model ------------------------------------


def test_fit_baseline_fits_the_kind_on_the_features_asked_for_or_every_one():
    x, y = frame()
    x["noise"] = np.random.default_rng(1).normal(size=len(x))
    rows, valid = (x[:500], y[:500]), (x[500:], y[500:])
    train = settings("xgb")  # the model's kind plays no part: the baseline names its own
    chosen, used = model.fit_baseline(KINDS, train, "logreg", ["b", "a"], rows, valid)
    assert chosen.kind.name == "logreg" and used == ["b", "a"]
    assert chosen.estimator[-1].n_features_in_ == 2
    assert chosen.estimator[-1].random_state == train.seed  # train.seed, train.logreg's C
    assert chosen.estimator[-1].C == train.logreg.C
    every, used_all = model.fit_baseline(KINDS, train, "logreg", [], rows, valid)
    assert used_all == ["a", "b", "noise"] and every.estimator[-1].n_features_in_ == 3
    # a fits the label; b and the noise do not: the baseline without a is no better than chance.
    weak, _ = model.fit_baseline(KINDS, train, "logreg", ["b", "noise"], rows, valid)
    held_out = y[500:]
    strong_auc = roc_auc_score(held_out, chosen.predict(x[500:][used]))
    weak_auc = roc_auc_score(held_out, weak.predict(x[500:][["b", "noise"]]))
    assert strong_auc > 0.9 and weak_auc < 0.65


def test_fit_baseline_fits_on_a_seeded_sample_beyond_max_rows():
    x, y = frame()
    rows, valid = (x[:500], y[:500]), (x[500:], y[500:])
    train = settings("xgb")
    sampled, _ = model.fit_baseline(KINDS, train, "logreg", [], rows, valid, max_rows=100)
    again, _ = model.fit_baseline(KINDS, train, "logreg", [], rows, valid, max_rows=100)
    whole, _ = model.fit_baseline(KINDS, train, "logreg", [], rows, valid, max_rows=500)
    unbounded, _ = model.fit_baseline(KINDS, train, "logreg", [], rows, valid)
    # logreg's scaler (the step before the regression) counts the rows it was fitted on: the
    # kind fits on the fit and the valid rows, here 100 of 500 and the same fifth of 100.
    assert sampled.estimator[-2].n_samples_seen_ == 100 + 20
    assert whole.estimator[-2].n_samples_seen_ == 500 + 100
    assert unbounded.estimator[-2].n_samples_seen_ == 500 + 100
    assert np.array_equal(sampled.estimator[-1].coef_, again.estimator[-1].coef_)  # train.seed
    assert not np.array_equal(sampled.estimator[-1].coef_, whole.estimator[-1].coef_)


def test_fit_baseline_names_an_unknown_kind_or_feature_in_one_line():
    x, y = frame()
    rows, valid = (x[:500], y[:500]), (x[500:], y[500:])
    with pytest.raises(UserError) as err:
        model.fit_baseline(KINDS, settings("xgb"), "svm", [], rows, valid)
    assert str(err.value) == (
        "params.yaml: evaluate.baseline_kind 'svm' is not one of the problem's model kinds "
        "['logreg', 'rf', 'xgb']"
    )
    with pytest.raises(UserError) as err:
        model.fit_baseline(KINDS, settings("xgb"), "logreg", ["a", "bb"], rows, valid, "p.yaml")
    assert str(err.value) == (
        "p.yaml: evaluate.baseline_features names 'bb', not a feature of the model (did you "
        "mean 'b'? it has 2: a, b); fix the name, or [] for every feature"
    )
    assert "\n" not in str(err.value)
