"""kkbox.kinds: what every model kind promises the loop (cd4ml.problem.ModelKind), checked on each
kind the package holds: found by its module, reproducible from its seed, saved in its library's
own format and loaded back scoring the same, a foreign file refused in one line, importances that
are shares; and the skops kinds' trust check (kinds.Skops)."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from cd4ml.io import UserError
from cd4ml.problem import ModelKind, discover_kinds
from kkbox.kinds import normalised
from tests import kinds

KINDS = discover_kinds("kkbox.kinds")
FORMATS = {"xgb": ("model.ubj", "xgboost"), "rf": ("model.skops", "skops.io")}
FORMATS["logreg"] = FORMATS["rf"]


def test_each_module_of_the_package_is_a_kind_of_its_name():
    assert sorted(KINDS) == ["logreg", "rf", "xgb"]
    for name, kind in KINDS.items():
        assert isinstance(kind, ModelKind)
        assert type(kind).__module__ == f"kkbox.kinds.{name}"
        assert (kind.file, kind.library) == FORMATS[name]


@pytest.mark.parametrize("name", sorted(KINDS))
def test_the_seed_makes_the_model_reproducible(name):
    kind = KINDS[name]
    first, _, x, _ = kinds.fitted(kind, kinds.small(kind), seed=1)
    again, _, _, _ = kinds.fitted(kind, kinds.small(kind), seed=1)
    np.testing.assert_array_equal(kind.predict(first, x), kind.predict(again, x))


@pytest.mark.parametrize("name", sorted(KINDS))
def test_save_and_load_in_the_librarys_format_give_the_same_predictions(tmp_path, name):
    kind = KINDS[name]
    model, _, x, _ = kinds.fitted(kind, kinds.small(kind))
    path = tmp_path / kind.file
    kind.save(model, path)
    if kind.file.endswith(".skops"):
        assert zipfile.is_zipfile(path)  # skops: a zip of JSON, not a pickle
    else:
        assert path.read_bytes()[:1] == b"{"  # UBJSON
    again = kind.load(path)
    np.testing.assert_array_equal(kind.predict(again, x), kind.predict(model, x))


@pytest.mark.parametrize("name", sorted(KINDS))
def test_a_pickle_is_refused_in_one_line_naming_the_file(tmp_path, name):
    kind = KINDS[name]
    path = tmp_path / kind.file
    path.write_bytes(b"\x80\x04K\x01.")  # a pickle of the number 1
    with pytest.raises(UserError) as err:
        kind.load(path)
    message = str(err.value)
    assert message.startswith(f"{path}: not a") and "\n" not in message


@pytest.mark.parametrize("name", sorted(KINDS))
def test_importances_are_shares_of_every_feature(name):
    kind = KINDS[name]
    model, _, x, _ = kinds.fitted(kind, kinds.small(kind))
    shares = kind.importances(model, list(x.columns))
    assert list(shares) == ["a", "b", "c"]
    assert sum(shares.values()) == pytest.approx(1.0)
    assert shares["a"] > max(shares["b"], shares["c"]) >= 0  # `a` carries the signal


@pytest.mark.parametrize(
    ("name", "module", "cls"),
    [
        ("rf", "sklearn.tree._classes", "DecisionTreeClassifier"),
        ("logreg", "sklearn.preprocessing._data", "StandardScaler"),
    ],
)
def test_a_skops_file_that_smuggles_in_a_type_is_refused_before_it_loads(
    tmp_path, name, module, cls
):
    kind = KINDS[name]
    model, _, _, _ = kinds.fitted(kind, kinds.small(kind))
    path = tmp_path / kind.file
    kind.save(model, path)
    kinds.tamper(path, module, cls)
    with pytest.raises(UserError) as err:
        kind.load(path)
    assert str(err.value) == (
        f"{path}: holds types this model kind never needs: ['subprocess.Popen']"
    )


def test_normalised_takes_magnitudes_as_shares():
    assert normalised([-3.0, 1.0, 0.0], ["a", "b", "c"]) == {"a": 0.75, "b": 0.25, "c": 0.0}
    assert normalised([0.0, 0.0], ["a", "b"]) == {"a": 0.0, "b": 0.0}
    with pytest.raises(ValueError):
        normalised([1.0], ["a", "b"])
