"""cd4ml.bundle: write, verify and load a release bundle, score raw rows with the problem's
flags, refuse bad bundles and bad rows with one line that names the file, the row or the field,
and never unpickle."""

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
import pyarrow.parquet as pq
import pytest
from pydantic import BaseModel

from cd4ml import bundle, engine, health, model
from cd4ml.io import UserError, run_main, sha256
from kkbox import PROBLEM, features, featurizer
from tests import faulty, toy
from tests.bundles import ABOUT, COLD, NEW_SONG, Fitted, fit_featurizer, train, write_bundle
from tests.project import ROOT

KINDS = sorted(PROBLEM.kinds)
FIELDS = bundle.input_fields(PROBLEM.Row)
NAMES = [f.name for f in FIELDS]


@dataclass
class Built:
    fitted: Fitted
    models: dict[str, model.Model]
    paths: dict[str, Path]  # kind -> bundle folder

    @property
    def rows(self) -> pa.Table:
        """The raw eval plays without the target, as a caller sends them."""
        return self.fitted.eval_raw.drop(["target"])

    def expected(self, kind: str) -> np.ndarray:
        """The model's own probabilities on preprocess's features of the eval rows."""
        return self.models[kind].predict(self.fitted.eval_x)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    folder = tmp_path_factory.mktemp("bundles")
    fitted = fit_featurizer(folder)
    models = {kind: train(fitted, kind) for kind in KINDS}
    paths = {kind: write_bundle(folder / kind, fitted, m) for kind, m in models.items()}
    return Built(fitted, models, paths)


@pytest.fixture
def copy(built: Built, tmp_path: Path) -> Path:
    """A copy of the xgb bundle that a test may damage."""
    return Path(shutil.copytree(built.paths["xgb"], tmp_path / "bundle"))


def files_of(folder: Path) -> list[str]:
    """The bundle's files but the manifest, as the manifest names them."""
    found = (p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    return sorted(name for name in found if name != bundle.MANIFEST)


def rehash(folder: Path, **changes: Any) -> None:
    """Recompute the manifest's hashes of the files as they are now (a consistent, tampered
    bundle), with `changes` to the manifest."""
    manifest = json.loads((folder / bundle.MANIFEST).read_text())
    manifest["files"] = {
        name: {"sha256": sha256(folder / name), "bytes": (folder / name).stat().st_size}
        for name in files_of(folder)
    }
    manifest.update(changes)
    (folder / bundle.MANIFEST).write_text(json.dumps(manifest))


def refused(folder: Path, problem: Any = PROBLEM) -> str:
    """The one-line UserError that loading this bundle gives."""
    with pytest.raises(UserError) as err:
        bundle.load(folder, problem)
    message = str(err.value)
    assert "\n" not in message
    return message


# --- writing and scoring ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_manifest_hashes_every_file_and_records_the_provenance(built, kind):
    folder = built.paths[kind]
    manifest = bundle.verify(folder)
    expected_files = sorted(
        [
            PROBLEM.kinds[kind].file,
            bundle.SCHEMA,
            bundle.PROFILE,
            *(f"{bundle.FEATURIZER}/{name}" for name in featurizer.FILES),
        ]
    )
    assert sorted(manifest["files"]) == expected_files == files_of(folder)
    for name, entry in manifest["files"].items():
        assert entry["sha256"] == sha256(folder / name)
        assert entry["bytes"] == (folder / name).stat().st_size
    assert manifest["model"] == kind and manifest["model_file"] == PROBLEM.kinds[kind].file
    assert manifest["name"] == PROBLEM.name and manifest["problem"] == "kkbox"
    assert manifest["format"] == bundle.FORMAT == 2 and manifest["data_version"] == "x"
    assert manifest["build"] == ABOUT["build"] and "git" not in manifest
    schema = json.loads((folder / bundle.SCHEMA).read_text())
    assert schema["features"] == features.FEATURES
    assert sorted(schema["input"]) == sorted(NAMES) == sorted(PROBLEM.Row.model_fields)
    assert schema["input"]["msno"] == {"type": "string", "required": True, "nullable": False}
    assert schema["input"]["source_type"]["nullable"] is True
    assert schema["output"] == PROBLEM.description


def test_the_training_profile_has_the_eval_flags_and_mean_probability(built):
    profile = json.loads((built.paths["xgb"] / bundle.PROFILE).read_text())
    train_raw = built.fitted.train_raw
    assert profile["positive_rate"] == pytest.approx(np.mean(train_raw["target"].to_numpy()))
    assert profile["eval"] == {
        "rows": built.rows.num_rows,
        "flags": {
            # COLD: two unknown members and songs; NEW_SONG: one more unknown song
            "unknown_member": pytest.approx(1 / built.rows.num_rows),
            "unknown_song": pytest.approx(2 / built.rows.num_rows),
        },
        "mean_probability": pytest.approx(float(np.mean(built.expected("xgb")))),
    }
    # The profiled table is the input rows, their categorical fields only
    assert sorted(profile["tables"]) == [bundle.ROWS]
    assert sorted(bundle.categorical_inputs(PROBLEM)) == sorted(features.SOURCE)


def test_write_refuses_a_folder_that_holds_no_model(built, tmp_path):
    (tmp_path / "bundle").mkdir()
    with pytest.raises(UserError, match=r"model\.json: not found; run `dvc repro train`"):
        bundle.write(
            tmp_path / "bundle",
            PROBLEM,
            tmp_path / "nomodel",
            built.fitted.folder,
            features.FEATURES,
            ABOUT,
            {},
        )
    assert not list((tmp_path / "bundle").iterdir())


@pytest.mark.parametrize("kind", KINDS)
def test_bundle_scores_raw_rows_as_the_model_scores_the_pipeline_features(built, kind):
    scorer = bundle.load(built.paths[kind], PROBLEM)
    assert scorer.model.kind is PROBLEM.kinds[kind]
    assert type(scorer.model.estimator) is type(built.models[kind].estimator)
    expected = built.expected(kind)
    as_table = scorer.predict_proba(built.rows)
    as_frame = scorer.predict_proba(built.rows.to_pandas())
    as_dicts = scorer.predict_proba(built.rows.to_pylist())
    assert as_table.shape == (built.rows.num_rows,)
    assert np.abs(as_table - expected).max() <= 1e-6
    np.testing.assert_array_equal(as_frame, as_table)
    np.testing.assert_array_equal(as_dicts, as_table)
    assert expected.std() > 0.05  # the model learned something: equal numbers mean something


def test_score_flags_the_rows_the_featurizer_does_not_know(built):
    scorer = bundle.load(built.paths["xgb"], PROBLEM)
    known = scorer.featurizer.example()
    rows = [
        known,
        {**known, "msno": COLD[0][0], "song_id": COLD[0][1]},
        {**known, "msno": NEW_SONG[0], "song_id": NEW_SONG[1]},
    ]
    scored = scorer.score(rows)
    assert isinstance(scored, bundle.Scored)
    assert sorted(scored.flags) == sorted(PROBLEM.flags)
    assert scored.flags["unknown_member"].tolist() == [False, True, False]
    assert scored.flags["unknown_song"].tolist() == [False, True, True]
    assert scored.counts() == {"unknown_member": 1, "unknown_song": 2}
    np.testing.assert_array_equal(scored.probabilities, scorer.predict_proba(rows))
    empty = scorer.score([])
    assert empty.probabilities.shape == (0,) and empty.counts() == dict.fromkeys(PROBLEM.flags, 0)


def test_the_target_column_and_extra_fields_are_ignored(built):
    scorer = bundle.load(built.paths["xgb"], PROBLEM)
    with_id = [{"id": i, **row} for i, row in enumerate(built.rows.to_pylist())]
    np.testing.assert_array_equal(
        scorer.predict_proba(built.fitted.eval_raw), scorer.predict_proba(with_id)
    )


def test_rows_are_scored_in_their_order(built):
    scorer = bundle.load(built.paths["xgb"], PROBLEM)
    p = scorer.predict_proba(built.rows)
    reversed_rows = built.rows.to_pylist()[::-1]
    np.testing.assert_array_equal(scorer.predict_proba(reversed_rows), p[::-1])
    np.testing.assert_array_equal(scorer.predict_proba(reversed_rows[:1]), p[-1:])


def test_an_empty_source_is_a_missing_one(built):
    scorer = bundle.load(built.paths["xgb"], PROBLEM)
    rows = built.rows.to_pylist()[:50]
    as_none = [{**row, **dict.fromkeys(features.SOURCE)} for row in rows]
    as_empty = [{**row, **dict.fromkeys(features.SOURCE, "")} for row in rows]

    def x(given: list[dict]) -> pd.DataFrame:
        return scorer.featurizer.transform(scorer.rows(given)).x

    assert (x(as_empty)[features.SOURCE] == features.MISSING).all().all()  # not "unseen"
    pd.testing.assert_frame_equal(x(as_empty), x(as_none), check_exact=True)
    np.testing.assert_array_equal(scorer.predict_proba(as_empty), scorer.predict_proba(as_none))
    as_frame = pd.DataFrame(as_empty)
    np.testing.assert_array_equal(scorer.predict_proba(as_frame), scorer.predict_proba(as_none))


def test_arrow_dictionary_and_large_string_columns_score_the_same(built):
    scorer = bundle.load(built.paths["xgb"], PROBLEM)
    p = scorer.predict_proba(built.rows)
    dictionaries = pa.table({c: built.rows[c].dictionary_encode() for c in NAMES})
    large = built.rows.select(NAMES).cast(pa.schema([(c, pa.large_string()) for c in NAMES]))
    np.testing.assert_array_equal(scorer.predict_proba(dictionaries), p)
    np.testing.assert_array_equal(scorer.predict_proba(large), p)


def test_no_rows_give_no_probabilities(built):
    scorer = bundle.load(built.paths["xgb"], PROBLEM)
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
    for kind in KINDS:
        p = bundle.load(built.paths[kind], PROBLEM).predict_proba(built.rows)
        assert np.abs(p - built.expected(kind)).max() <= 1e-6


# --- bad bundles -----------------------------------------------------------------------------


def test_a_folder_that_is_no_bundle_is_refused(tmp_path):
    assert "no bundle folder" in refused(tmp_path / "nowhere")
    message = refused(tmp_path)
    assert message.startswith(f"{tmp_path / bundle.MANIFEST}: not found")


@pytest.mark.parametrize("name", ["model.ubj", "featurizer/stats.parquet", "schema.json"])
def test_a_missing_file_is_refused_by_name(copy, name):
    (copy / name).unlink()
    assert refused(copy) == (
        f"{copy / name}: listed in {bundle.MANIFEST} but missing from the bundle"
    )


@pytest.mark.parametrize("name", ["model.skops", "featurizer/extra.parquet"])
def test_an_extra_file_is_refused_by_name(copy, name):
    (copy / name).write_bytes(b"smuggled")
    assert refused(copy).startswith(f"{copy / name}: not listed in {bundle.MANIFEST}")


@pytest.mark.parametrize("name", ["featurizer/stats.parquet", "model.ubj", "profile.json"])
def test_one_changed_byte_is_refused_by_name(copy, name):
    data = bytearray((copy / name).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / name).write_bytes(bytes(data))
    assert refused(copy) == (
        f"{copy / name}: sha256 differs from {bundle.MANIFEST}: the file was changed or damaged"
    )


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("{not json", "not valid JSON"),
        ('{"format": 2}', "has no valid 'files' list"),
        ('{"format": 2, "files": {"model.ubj": "abc"}}', "has no valid 'files' list"),
        ("[1, 2]", "has no valid 'files' list"),
    ],
)
def test_a_manifest_that_is_not_one_is_refused_by_name(copy, content, says):
    (copy / bundle.MANIFEST).write_text(content)
    message = refused(copy)
    assert message.startswith(f"{copy / bundle.MANIFEST}: ") and says in message


def test_a_bundle_of_format_1_is_refused_with_the_fix(copy):
    # Format 1: the featurizer's files at the top, the estimator's kind only.
    for path in (copy / bundle.FEATURIZER).iterdir():
        path.rename(copy / path.name)
    (copy / bundle.FEATURIZER).rmdir()
    rehash(copy, format=1)
    assert refused(copy) == (
        f"{copy / bundle.MANIFEST}: bundle format 1, this code reads format 2; rebuild it "
        "(dvc repro bundle) or fetch a newer release"
    )


def test_a_bundle_of_another_problem_is_refused(built, copy):
    assert refused(built.paths["xgb"], toy.PROBLEM) == (
        f"{built.paths['xgb'] / bundle.MANIFEST}: a bundle of problem 'kkbox', not "
        "'tests.toy' (params.yaml's problem)"
    )
    rehash(copy, problem="tests.toy")
    assert "a bundle of problem 'tests.toy', not 'kkbox'" in refused(copy)


def test_a_manifest_with_an_unknown_model_kind_is_refused(copy):
    rehash(copy, model="lgbm")
    assert refused(copy) == (
        f"{copy / bundle.MANIFEST}: model kind 'lgbm' is not one of the problem's {KINDS}"
    )


def test_a_model_file_that_is_no_xgboost_model_is_refused(copy):
    (copy / "model.ubj").write_bytes(b'{"not": "a model"}')
    rehash(copy)
    message = refused(copy)
    assert message.startswith(f"{copy / 'model.ubj'}: not an XGBoost model (")


def test_a_manifest_whose_kind_does_not_match_the_model_file_is_refused(copy):
    rehash(copy, model="rf")
    assert refused(copy) == (
        f"{copy / bundle.MANIFEST}: the model of kind rf is in model.skops, not 'model.ubj'"
    )


def test_damaged_featurizer_files_are_refused_by_name_even_with_matching_hashes(copy):
    (copy / "featurizer" / "encoder.json").write_text("{not json")
    rehash(copy)
    assert refused(copy).startswith(f"{copy / 'featurizer' / 'encoder.json'}: not a featurizer")


def untrusted_objects() -> dict[str, Any]:
    from sklearn.preprocessing import FunctionTransformer

    return {"function": FunctionTransformer(func=os.getcwd), "class": Smuggled()}


class Smuggled:
    """A type no model kind's file holds."""

    def __init__(self) -> None:
        self.payload = "x"


@pytest.mark.parametrize("kind", ["rf", "logreg"])
@pytest.mark.parametrize("what", ["function", "class"])
def test_a_skops_file_with_untrusted_types_is_refused_before_it_is_loaded(
    built, tmp_path, monkeypatch, what, kind
):
    import skops.io

    folder = Path(shutil.copytree(built.paths[kind], tmp_path / "bundle"))
    skops.io.dump(untrusted_objects()[what], folder / "model.skops")
    rehash(folder)

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("skops.io.load ran on an untrusted file")

    monkeypatch.setattr(skops.io, "load", forbidden)
    message = refused(folder)
    assert message.startswith(f"{folder / 'model.skops'}: holds types this model kind never")
    expected = "posix.getcwd" if what == "function" else f"{__name__}.Smuggled"
    assert expected in message


def test_a_skops_file_that_is_no_skops_file_is_refused(built, tmp_path):
    folder = Path(shutil.copytree(built.paths["rf"], tmp_path / "bundle"))
    (folder / "model.skops").write_bytes(b"not a zip")
    rehash(folder)
    assert refused(folder).startswith(f"{folder / 'model.skops'}: not a skops file (")


def test_a_skops_file_of_another_estimator_is_refused(built, tmp_path):
    folder = Path(shutil.copytree(built.paths["rf"], tmp_path / "bundle"))
    logreg = built.paths["logreg"] / "model.skops"
    shutil.copyfile(logreg, folder / "model.skops")  # a trusted file, of the other kind
    rehash(folder)
    assert refused(folder) == (
        f"{folder / 'model.skops'}: holds a Pipeline, not a RandomForestClassifier"
    )


@pytest.mark.parametrize("kind", KINDS)
def test_the_bundle_holds_the_model_folders_file_as_it_is(built, kind):
    folder = built.paths[kind].with_name(f"{kind}-model")  # write_bundle's model folder
    assert model.read_info(folder)["kind"] == kind
    name = PROBLEM.kinds[kind].file
    assert sha256(folder / name) == sha256(built.paths[kind] / name)


# --- input fields and bad rows ---------------------------------------------------------------


def test_input_fields_are_the_rows_fields_in_order():
    assert [(f.name, f.type, f.nullable) for f in FIELDS] == [
        ("msno", pa.string(), False),
        ("song_id", pa.string(), False),
        ("source_system_tab", pa.string(), True),
        ("source_screen_name", pa.string(), True),
        ("source_type", pa.string(), True),
    ]

    class Mixed(BaseModel):
        count: int
        share: float | None
        flag: bool

    assert [(f.name, f.type, f.nullable) for f in bundle.input_fields(Mixed)] == [
        ("count", pa.int64(), False),
        ("share", pa.float64(), True),
        ("flag", pa.bool_(), False),
    ]


def test_a_row_field_of_no_input_type_is_refused():
    class Odd(BaseModel):
        tags: list[str]

    with pytest.raises(TypeError, match=r"Odd\.tags: list\[str\] is no input type"):
        bundle.input_fields(Odd)


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
    table = bundle.rows_table([row(), row(source_type=None, source_system_tab="")], FIELDS)
    assert table.column_names == NAMES
    assert table["source_type"].to_pylist() == ["local-library", None]
    assert table["source_system_tab"].to_pylist() == ["my library", None]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([row(), row(), row(), row(msno=12)], "rows[3].msno must be a string, got int 12"),
        ([row(), row(msno=None)], "rows[1].msno is missing: every row needs it"),
        ([row(song_id=float("nan"))], "rows[0].song_id is missing"),
        ([row(), row(source_type=5)], "rows[1].source_type must be a string, got int 5"),
        ([row(source_screen_name=True)], "rows[0].source_screen_name must be a string, got bool"),
        ([row(), {"msno": "m"}], "rows[1] lacks the field(s) ['song_id', 'source_system_tab',"),
        ([row(), "m001"], "rows[1] must be an object of fields, got str"),
    ],
)
def test_bad_dict_rows_name_the_row_and_the_field(rows, message):
    with pytest.raises(UserError) as err:
        bundle.rows_table(rows, FIELDS)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_bad_values_of_number_fields_name_the_row_and_the_field():
    class Reading(BaseModel):
        count: int
        share: float | None

    fields = bundle.input_fields(Reading)
    good = bundle.rows_table([{"count": 3, "share": None}, {"count": 4, "share": 0.5}], fields)
    assert good["count"].to_pylist() == [3, 4] and good["share"].to_pylist() == [None, 0.5]
    for rows, message in (
        (
            [{"count": 1, "share": 0.1}, {"count": "x", "share": 0.1}],
            "rows[1].count must be a whole number, got str 'x'",
        ),
        ([{"count": None, "share": 0.1}], "rows[0].count is missing: every row needs it"),
        ([{"count": 1, "share": "high"}], "rows[0].share must be a number, got str 'high'"),
    ):
        with pytest.raises(UserError) as err:
            bundle.rows_table(rows, fields)
        assert str(err.value) == message


def test_table_columns_of_number_fields_may_be_narrower_but_not_text():
    class Reading(BaseModel):
        count: int
        share: float | None

    fields = bundle.input_fields(Reading)
    narrow = pa.table(
        {"count": pa.array([1, 2], pa.int8()), "share": pa.array([1, 2], pa.int32())}
    )
    table = bundle.rows_table(narrow, fields)
    assert table.schema == pa.schema([("count", pa.int64()), ("share", pa.float64())])
    assert table["share"].to_pylist() == [1.0, 2.0]
    for columns, message in (
        ({"count": ["1"], "share": [0.5]}, "column count must hold int64 values, got string"),
        ({"count": [1.5], "share": [0.5]}, "column count must hold int64 values, got double"),
        ({"count": [1], "share": ["0.5"]}, "column share must hold double values, got string"),
        (
            {"count": pa.array([2**64 - 1], pa.uint64()), "share": [0.5]},
            "column count must hold int64 values (",
        ),
    ):
        with pytest.raises(UserError) as err:
            bundle.rows_table(pa.table(columns), fields)
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
        bundle.rows_table(rows, FIELDS)
    assert str(err.value).startswith(message)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (pa.table({"msno": ["a"]}), "rows lack the column(s) ['song_id', 'source_system_tab',"),
        (pa.Table.from_pylist([row(), row(msno=None)]), "rows[1].msno is missing"),
        (
            pa.Table.from_pylist([row(msno=3)]),
            "column msno must hold string values, got int64",
        ),
        (
            pa.Table.from_pylist([row(source_type=3)]),
            "column source_type must hold string values, got int64",
        ),
    ],
)
def test_bad_table_rows_name_the_column(rows, message):
    with pytest.raises(UserError) as err:
        bundle.rows_table(rows, FIELDS)
    assert str(err.value).startswith(message)


def test_an_all_null_source_column_of_a_table_is_allowed():
    rows = pa.Table.from_pylist([row(source_screen_name=None), row(source_screen_name=None)])
    assert rows["source_screen_name"].type == pa.null()
    table = bundle.rows_table(rows, FIELDS)
    assert table["source_screen_name"].type == pa.string()
    assert table["source_screen_name"].null_count == 2


@pytest.mark.parametrize(
    "times",
    [
        pa.chunked_array([[20161231, 20170105], [20170102]]),  # YYYYMMDD integers
        pa.chunked_array([pa.array(np.array(["2016-12-31", "2017-01-05"], "datetime64[D]"))]),
        pa.chunked_array(
            [pa.array(np.array(["2017-01-05T23:59", "2016-12-31"], "datetime64[ms]"))]
        ),
    ],
)
def test_the_data_end_is_the_latest_time_of_the_training_rows(times):
    assert bundle.data_end(times, "when") == {
        "date": "2017-01-05",
        "source": "latest when of the training rows",
    }


def test_neither_example_problem_has_a_time_column():
    # Their bundles record no data_end (never the build date: a rebuild is the same bundle);
    # the monitor counts a fetched version's age from its release (test_monitor).
    assert PROBLEM.contract.time is None and toy.PROBLEM.contract.time is None


@pytest.mark.parametrize(
    "times", [pa.chunked_array([[20171345]]), pa.chunked_array([pa.nulls(2, pa.int64())])]
)
def test_a_time_column_without_a_date_is_one_line(times):
    with pytest.raises(UserError, match="time column when: the training rows' latest value"):
        bundle.data_end(times, "when")


# --- numerical health: a model that scores NaN is refused, naming the row --------------------


@pytest.fixture
def nan_bundle(copy: Path) -> Path:
    """The xgb bundle as one of tests.faulty's kind `nan` (NaN for every row but the first)."""
    rehash(copy, problem="tests.faulty", model="nan")
    return copy


def test_a_bundle_whose_model_scores_nan_is_refused_naming_the_row(built, nan_bundle):
    scorer = bundle.load(nan_bundle, faulty.PROBLEM)
    first = scorer.predict_proba(built.rows.slice(0, 1))
    np.testing.assert_array_equal(first, built.expected("xgb")[:1])  # one row: no NaN
    with pytest.raises(health.Unhealthy) as err:
        scorer.predict_proba(built.rows)
    assert (err.value.row, err.value.feature) == (1, None)
    assert str(err.value) == "rows[1]: the model's probability is nan, not a number in [0, 1]"
    assert isinstance(err.value, UserError)


def test_the_bundle_stage_refuses_a_model_that_scores_nan_in_one_line(
    built, tmp_path, monkeypatch, capsys
):
    import bundle as stage  # src/bundle.py, the bundle stage

    fitted = built.fitted
    split, features = fitted.folder.parent / "split", tmp_path / "features"
    features.mkdir()
    pq.write_table(
        engine.FeatureOutput.table(fitted.eval_x, fitted.eval_raw["target"].to_numpy()),
        features / "eval.parquet",
    )
    shutil.copytree(fitted.folder, features / "featurizer")
    nan = model.Model(faulty.PROBLEM.kinds["nan"], built.models["xgb"].estimator)
    model.save(tmp_path / "model", nan, {"data_version": "x"})
    (tmp_path / "metrics.json").write_text("{}")
    committed = (ROOT / "params.yaml").read_text()
    (tmp_path / "params.yaml").write_text(
        committed.replace("problem: kkbox", "problem: tests.faulty")
    )
    monkeypatch.chdir(ROOT)  # the build hash reads dvc.yaml's stages' code
    argv = ["--model", str(tmp_path / "model"), "--features", str(features), "--split", str(split)]
    argv += ["--metrics", str(tmp_path / "metrics.json"), "--out", str(tmp_path / "bundle")]
    with pytest.raises(SystemExit):
        run_main(stage.main, [*argv, "--params", str(tmp_path / "params.yaml")])
    err = capsys.readouterr().err.strip()
    assert err == (
        f"error: {features / 'eval.parquet'}: rows[1]: the model's probability is nan, not a "
        f"number in [0, 1]; the model {tmp_path / 'model'} cannot be released: check the "
        "featurizer and the model's training"
    )
    assert not (tmp_path / "bundle").exists()
