"""kkbox.bundle: write, verify and load a release bundle, score raw rows, refuse bad bundles
and bad rows with one line that names the file, the row or the field, and never unpickle."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from cd4ml import bundle
from kkbox import features, featurizer
from cd4ml.io import UserError
from tests.bundles import ABOUT, Fitted, fit_featurizer, train, write_bundle


@dataclass
class Built:
    fitted: Fitted
    estimators: dict[str, Any]
    paths: dict[str, Path]  # kind -> bundle folder

    @property
    def rows(self) -> pa.Table:
        """The raw eval plays without the target, as a caller sends them."""
        return self.fitted.eval_raw.drop(["target"])

    def expected(self, kind: str) -> np.ndarray:
        """The estimator's own probabilities on preprocess's features of the eval rows."""
        return self.estimators[kind].predict_proba(self.fitted.eval_x)[:, 1]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    folder = tmp_path_factory.mktemp("bundles")
    fitted = fit_featurizer(folder)
    estimators = {kind: train(fitted, kind) for kind in bundle.MODEL_FILES}
    paths = {
        kind: write_bundle(folder / kind, fitted, estimator, kind)
        for kind, estimator in estimators.items()
    }
    return Built(fitted, estimators, paths)


@pytest.fixture
def copy(built: Built, tmp_path: Path) -> Path:
    """A copy of the xgb bundle that a test may damage."""
    return Path(shutil.copytree(built.paths["xgb"], tmp_path / "bundle"))


def rehash(folder: Path, **changes: Any) -> None:
    """Recompute the manifest's hashes of the files as they are now (a consistent, tampered
    bundle), with `changes` to the manifest."""
    manifest = json.loads((folder / bundle.MANIFEST).read_text())
    names = sorted(p.name for p in folder.iterdir() if p.name != bundle.MANIFEST)
    manifest["files"] = {
        name: {"sha256": bundle.sha256(folder / name), "bytes": (folder / name).stat().st_size}
        for name in names
    }
    manifest.update(changes)
    (folder / bundle.MANIFEST).write_text(json.dumps(manifest))


def refused(folder: Path) -> str:
    """The one-line UserError that loading this bundle gives."""
    with pytest.raises(UserError) as err:
        bundle.load(folder)
    message = str(err.value)
    assert "\n" not in message
    return message


# --- writing and scoring ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(bundle.MODEL_FILES))
def test_manifest_hashes_every_file_and_records_the_provenance(built, kind):
    folder = built.paths[kind]
    manifest = bundle.verify(folder)
    expected_files = sorted(
        [bundle.MODEL_FILES[kind], bundle.SCHEMA, bundle.PROFILE, *featurizer.FILES]
    )
    assert sorted(manifest["files"]) == expected_files
    assert sorted(p.name for p in folder.iterdir()) == sorted([*expected_files, bundle.MANIFEST])
    for name, entry in manifest["files"].items():
        assert entry["sha256"] == bundle.sha256(folder / name)
        assert entry["bytes"] == (folder / name).stat().st_size
    assert manifest["model"] == kind and manifest["name"] == bundle.NAME
    assert manifest["format"] == bundle.FORMAT and manifest["data_version"] == "x"
    schema = json.loads((folder / bundle.SCHEMA).read_text())
    assert schema["features"] == features.FEATURES
    assert sorted(schema["input"]) == sorted(bundle.INPUT)


def test_write_refuses_an_unknown_model_kind(built, tmp_path):
    with pytest.raises(UserError, match="model kind 'lgbm' has no bundle format"):
        bundle.write(tmp_path, built.estimators["xgb"], "lgbm", built.fitted.folder, ABOUT)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("kind", sorted(bundle.MODEL_FILES))
def test_bundle_scores_raw_rows_as_the_estimator_scores_the_pipeline_features(built, kind):
    scorer = bundle.load(built.paths[kind])
    assert type(scorer.model) is type(built.estimators[kind])
    expected = built.expected(kind)
    as_table = scorer.predict_proba(built.rows)
    as_frame = scorer.predict_proba(built.rows.to_pandas())
    as_dicts = scorer.predict_proba(built.rows.to_pylist())
    assert as_table.shape == (built.rows.num_rows,)
    assert np.abs(as_table - expected).max() <= 1e-6
    np.testing.assert_array_equal(as_frame, as_table)
    np.testing.assert_array_equal(as_dicts, as_table)
    assert expected.std() > 0.05  # the model learned something: equal numbers mean something


def test_the_target_column_and_extra_fields_are_ignored(built):
    scorer = bundle.load(built.paths["xgb"])
    with_id = [{"id": i, **row} for i, row in enumerate(built.rows.to_pylist())]
    np.testing.assert_array_equal(
        scorer.predict_proba(built.fitted.eval_raw), scorer.predict_proba(with_id)
    )


def test_rows_are_scored_in_their_order(built):
    scorer = bundle.load(built.paths["xgb"])
    p = scorer.predict_proba(built.rows)
    reversed_rows = built.rows.to_pylist()[::-1]
    np.testing.assert_array_equal(scorer.predict_proba(reversed_rows), p[::-1])
    np.testing.assert_array_equal(scorer.predict_proba(reversed_rows[:1]), p[-1:])


def test_an_empty_source_is_a_missing_one(built):
    scorer = bundle.load(built.paths["xgb"])
    rows = built.rows.to_pylist()[:50]
    as_none = [{**row, **{c: None for c in features.SOURCE}} for row in rows]
    as_empty = [{**row, **{c: "" for c in features.SOURCE}} for row in rows]
    x = scorer.features(as_empty)
    assert (x[features.SOURCE] == features.MISSING).all().all()  # not "unseen"
    pd.testing.assert_frame_equal(x, scorer.features(as_none), check_exact=True)
    np.testing.assert_array_equal(scorer.predict_proba(as_empty), scorer.predict_proba(as_none))
    as_frame = pd.DataFrame(as_empty)
    np.testing.assert_array_equal(scorer.predict_proba(as_frame), scorer.predict_proba(as_none))


def test_arrow_dictionary_and_large_string_columns_score_the_same(built):
    scorer = bundle.load(built.paths["xgb"])
    p = scorer.predict_proba(built.rows)
    dictionaries = pa.table({c: built.rows[c].dictionary_encode() for c in bundle.INPUT})
    large = built.rows.cast(pa.schema([(c, pa.large_string()) for c in bundle.INPUT]))
    np.testing.assert_array_equal(scorer.predict_proba(dictionaries), p)
    np.testing.assert_array_equal(scorer.predict_proba(large), p)


def test_no_rows_give_no_probabilities(built):
    scorer = bundle.load(built.paths["xgb"])
    assert scorer.predict_proba([]).shape == (0,)
    assert scorer.predict_proba(built.rows.slice(0, 0)).shape == (0,)


def test_loading_and_scoring_never_unpickle(built, monkeypatch, tmp_path):
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("pickle was used")

    numpy_load = np.load

    def numpy_load_without_pickle(*args: object, allow_pickle: bool = False, **kwargs: object):
        if allow_pickle:  # skops reads its arrays with np.load, pickle refused
            forbidden()
        return numpy_load(*args, allow_pickle=False, **kwargs)

    for module, name in ((pickle, "load"), (pickle, "loads"), (joblib, "load")):
        monkeypatch.setattr(module, name, forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    monkeypatch.setattr(np, "load", numpy_load_without_pickle)
    built.fitted.eval_x.to_pickle(tmp_path / "x.pkl")
    with pytest.raises(AssertionError, match="pickle was used"):  # a library's unpickling
        pd.read_pickle(tmp_path / "x.pkl")
    for kind in sorted(bundle.MODEL_FILES):
        p = bundle.load(built.paths[kind]).predict_proba(built.rows)
        assert np.abs(p - built.expected(kind)).max() <= 1e-6


# --- bad bundles -----------------------------------------------------------------------------


def test_a_folder_that_is_no_bundle_is_refused(tmp_path):
    assert "no bundle folder" in refused(tmp_path / "nowhere")
    message = refused(tmp_path)
    assert message.startswith(f"{tmp_path / bundle.MANIFEST}: not found")


@pytest.mark.parametrize("name", ["model.ubj", "stats.parquet", "schema.json"])
def test_a_missing_file_is_refused_by_name(copy, name):
    (copy / name).unlink()
    assert refused(copy) == (
        f"{copy / name}: listed in {bundle.MANIFEST} but missing from the bundle"
    )


def test_an_extra_file_is_refused_by_name(copy):
    (copy / "model.skops").write_bytes(b"smuggled")
    assert refused(copy).startswith(f"{copy / 'model.skops'}: not listed in {bundle.MANIFEST}")


def test_one_changed_byte_is_refused_by_name(copy):
    data = bytearray((copy / "stats.parquet").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "stats.parquet").write_bytes(bytes(data))
    assert refused(copy) == (
        f"{copy / 'stats.parquet'}: sha256 differs from {bundle.MANIFEST}: the file was "
        "changed or damaged"
    )


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("{not json", "not valid JSON"),
        ('{"format": 1}', "has no valid 'files' list"),
        ('{"format": 1, "files": {"model.ubj": "abc"}}', "has no valid 'files' list"),
        ("[1, 2]", "has no valid 'files' list"),
    ],
)
def test_a_manifest_that_is_not_one_is_refused_by_name(copy, content, says):
    (copy / bundle.MANIFEST).write_text(content)
    message = refused(copy)
    assert message.startswith(f"{copy / bundle.MANIFEST}: ") and says in message


def test_a_manifest_of_another_format_is_refused(copy):
    rehash(copy, format=2)
    assert "bundle format 2, this code reads format 1" in refused(copy)


def test_a_manifest_with_an_unknown_model_kind_is_refused(copy):
    rehash(copy, model="lgbm")
    assert refused(copy) == (
        f"{copy / bundle.MANIFEST}: model kind 'lgbm' is not one of ['rf', 'xgb']"
    )


def test_a_model_file_that_is_no_xgboost_model_is_refused(copy):
    (copy / "model.ubj").write_bytes(b'{"not": "a model"}')
    rehash(copy)
    message = refused(copy)
    assert message.startswith(f"{copy / 'model.ubj'}: not an XGBoost model (")


def test_a_manifest_whose_kind_does_not_match_the_model_file_is_refused(copy):
    rehash(copy, model="rf")
    assert refused(copy).startswith(f"{copy / 'model.skops'}: a rf bundle needs this file")


def test_damaged_featurizer_files_are_refused_by_name_even_with_matching_hashes(copy):
    (copy / "encoder.json").write_text("{not json")
    rehash(copy)
    assert refused(copy).startswith(f"{copy / 'encoder.json'}: not a featurizer spec")


def untrusted_objects() -> dict[str, Any]:
    from sklearn.preprocessing import FunctionTransformer

    return {"function": FunctionTransformer(func=os.getcwd), "class": Smuggled()}


class Smuggled:
    """A type no random-forest bundle holds."""

    def __init__(self) -> None:
        self.payload = "x"


@pytest.mark.parametrize("what", ["function", "class"])
def test_a_skops_file_with_untrusted_types_is_refused_before_it_is_loaded(
    built, tmp_path, monkeypatch, what
):
    import skops.io

    folder = Path(shutil.copytree(built.paths["rf"], tmp_path / "bundle"))
    skops.io.dump(untrusted_objects()[what], folder / "model.skops")
    rehash(folder)

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("skops.io.load ran on an untrusted file")

    monkeypatch.setattr(skops.io, "load", forbidden)
    message = refused(folder)
    assert message.startswith(f"{folder / 'model.skops'}: holds types a random-forest bundle")
    expected = "posix.getcwd" if what == "function" else f"{__name__}.Smuggled"
    assert expected in message


def test_a_skops_file_that_is_no_skops_file_is_refused(built, tmp_path):
    folder = Path(shutil.copytree(built.paths["rf"], tmp_path / "bundle"))
    (folder / "model.skops").write_bytes(b"not a zip")
    rehash(folder)
    assert refused(folder).startswith(f"{folder / 'model.skops'}: not a skops file (")


def test_a_skops_file_of_another_estimator_is_refused(built, tmp_path):
    import skops.io
    from sklearn.linear_model import LogisticRegression

    folder = Path(shutil.copytree(built.paths["rf"], tmp_path / "bundle"))
    other = LogisticRegression().fit(built.fitted.train_x.fillna(0), built.fitted.train_y)
    skops.io.dump(other, folder / "model.skops")
    rehash(folder)
    assert "RandomForestClassifier" in refused(folder)


# --- bad rows --------------------------------------------------------------------------------


def row(**changes: Any) -> dict[str, Any]:
    good = {
        "msno": "m001",
        "song_id": "s002",
        "source_system_tab": "my library",
        "source_screen_name": None,
        "source_type": "local-library",
    }
    return {**good, **changes}


def test_good_rows_pass_and_a_missing_source_is_allowed():
    table = bundle.plays([row(), row(source_type=None, source_system_tab="")])
    assert table.column_names == list(bundle.INPUT)
    assert table["source_type"].to_pylist() == ["local-library", None]
    assert table["source_system_tab"].to_pylist() == ["my library", None]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([row(), row(), row(), row(msno=12)], "rows[3].msno must be a string, got int 12"),
        ([row(), row(msno=None)], "rows[1].msno is missing: every play needs a member and a song"),
        ([row(song_id=float("nan"))], "rows[0].song_id is missing"),
        ([row(), row(source_type=5)], "rows[1].source_type must be a string, got int 5"),
        ([row(source_screen_name=True)], "rows[0].source_screen_name must be a string, got bool"),
        ([row(), {"msno": "m"}], "rows[1] lacks the field(s) ['song_id', 'source_system_tab',"),
        ([row(), "m001"], "rows[1] must be an object of fields, got str"),
    ],
)
def test_bad_dict_rows_name_the_row_and_the_field(rows, message):
    with pytest.raises(UserError) as err:
        bundle.plays(rows)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def frame(**columns: list) -> pd.DataFrame:
    return pd.DataFrame([row()] * 3).assign(**columns)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (frame().drop(columns=["source_type"]), "rows lack the column(s) ['source_type']"),
        (frame(msno=["a", None, "c"]), "rows[1].msno is missing"),
        (frame(msno=["a", "b", np.nan]), "rows[2].msno is missing"),
        (frame(msno=["a", "b", 7]), "rows[2].msno must be a string, got int 7"),
        (frame(source_type=["x", "y", 5]), "rows[2].source_type must be a string, got int 5"),
    ],
)
def test_bad_frame_rows_name_the_row_and_the_field(rows, message):
    with pytest.raises(UserError) as err:
        bundle.plays(rows)
    assert str(err.value).startswith(message)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (pa.table({"msno": ["a"]}), "rows lack the column(s) ['song_id', 'source_system_tab',"),
        (
            pa.Table.from_pylist([row(), row(msno=None)]),
            "rows[1].msno is missing",
        ),
        (
            pa.Table.from_pylist([row(msno=3)]),
            "column msno must hold strings, got int64",
        ),
        (
            pa.Table.from_pylist([row(source_type=3)]),
            "column source_type must hold strings, got int64",
        ),
    ],
)
def test_bad_table_rows_name_the_column(rows, message):
    with pytest.raises(UserError) as err:
        bundle.plays(rows)
    assert str(err.value).startswith(message)


def test_an_all_null_source_column_of_a_table_is_allowed():
    rows = pa.Table.from_pylist([row(source_screen_name=None), row(source_screen_name=None)])
    assert rows["source_screen_name"].type == pa.null()
    table = bundle.plays(rows)
    assert table["source_screen_name"].type == pa.string()
    assert table["source_screen_name"].null_count == 2
