"""Data tests of stage validate: the declared schema, its Arrow engine, coverage and drift."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pdp
import pyarrow as pa
import pytest
import yaml

import validate as stage
from kkbox import params, schema, synth, validation
from kkbox.io import UserError, write_csv
from kkbox.raw import check_columns, read_table
from project import ROOT

REFERENCE = ROOT / "reference" / "profile.json"
# Fixed thresholds, so that these tests do not move with params.yaml.
SETTINGS = params.Validate(
    drift_severity="warn",
    max_missing_rate_change=0.1,
    max_category_tvd=0.15,
    max_new_category_share=0.01,
    max_positive_rate_change=0.05,
    min_join_coverage=0.95,
)


def _table(name: str, **columns: list) -> pa.Table:
    """A table of `name`'s schema: given columns, every other column filled with valid values."""
    n = len(next(iter(columns.values())))
    defaults = {
        pa.string(): "x",
        pa.int8(): 1,
        pa.int16(): 7,
        pa.int32(): 20170101,
        pa.float32(): 52.0,
        pa.float64(): 0.5,
    }
    arrays = {
        col: pa.array(columns.get(col, [defaults[kind]] * n), kind)
        for col, kind in schema.TABLES[name].items()
    }
    if name == schema.MEMBERS and "msno" not in columns:
        arrays["msno"] = pa.array([f"m{i}" for i in range(n)])
    return pa.table(arrays)


def _check(name: str, table: pa.Table) -> tuple[list[validation.Finding], dict]:
    categorical = frozenset(schema.CATEGORIES.get(name, {}))
    found, soft, _ = validation.check_table(name, table, schema.COLUMNS[name], categorical)
    return found, soft


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, pa.Table]:
    """The tiny synthetic data set, written as CSV and read back as the stage reads it."""
    folder = tmp_path_factory.mktemp("tiny")
    for name, columns in synth.generate(synth.SCALES["tiny"], seed=2017).items():
        write_csv(columns, folder / name)
    return {name: read_table(folder / name, name) for name in schema.TABLES}


# --- the declaration --------------------------------------------------------------------------


def test_contract_and_its_pandera_rendering_match_the_read_types_and_order():
    declared = schema.declared()
    assert set(schema.COLUMNS) == set(declared) == set(schema.TABLES)
    for name, columns in schema.TABLES.items():
        assert list(schema.COLUMNS[name]) == list(columns)
        assert list(declared[name].columns) == list(columns)
        assert declared[name].strict and declared[name].ordered
        for col, kind in columns.items():
            column = declared[name].columns[col]
            spec = schema.COLUMNS[name][col]
            assert column.dtype.type.pyarrow_dtype == kind
            assert (column.nullable, column.unique) == (spec.nullable, spec.unique)
            assert [c.name for c in column.checks] == [r.kind for r in spec.rules]
            assert [c.raise_warning for c in column.checks] == [r.soft for r in spec.rules]
    assert schema.COLUMNS[schema.MEMBERS]["msno"].unique
    assert schema.COLUMNS[schema.SONGS]["song_id"].unique
    assert schema.COLUMNS[schema.TEST]["id"].unique


def test_the_stage_does_not_import_pandas():
    code = "import sys, validate; assert 'pandas' not in sys.modules, 'pandas imported'"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT / "src", check=True)


def test_the_generator_only_uses_declared_categories():
    tabs, screens, types = ({s[i] for s in synth.SOURCES if s[i] is not None} for i in range(3))
    assert tabs <= set(schema.SOURCE_SYSTEM_TABS)
    assert screens <= set(schema.SOURCE_SCREEN_NAMES)
    assert types <= set(schema.SOURCE_TYPES)
    assert set(synth.CITIES) <= set(schema.CITIES)
    assert {v for v, _ in synth.REGISTERED_VIA} <= set(schema.REGISTERED_VIA)
    assert {code for code, _, _ in synth.LANGUAGES} <= set(schema.LANGUAGES)


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        (20170101, True),
        (20160229, True),
        (20170229, False),
        (20171340, False),
        (20170431, False),
        (19700101, True),
        (20171231, True),
        (0, False),
        (-20170101, False),
        (2017011, False),
        (21010101, False),
    ],
)
def test_yyyymmdd(value, valid):
    assert bool(schema.is_yyyymmdd(np.array([value]))[0]) is valid


# --- the Arrow engine -------------------------------------------------------------------------


def test_tiny_synthetic_data_passes_and_its_quirks_are_counted(tiny):
    outcome = validation.validate(tiny, SETTINGS, None)
    assert outcome.errors == []
    quirks = outcome.report["quirks"]
    assert quirks["members.csv"]["bd"]["bd 0 (age not given)"] > 0
    assert quirks["songs.csv"]["language"]["language -1 (unknown)"] > 0
    assert quirks["songs.csv"]["genre_ids"]["genre missing"] > 0
    assert quirks["train.csv"]["source_system_tab"]["literal 'null' tab"] > 0
    assert quirks["train.csv"]["source_type"]["unknown category"] == 0
    assert outcome.report["coverage"]["train.csv"]["msno in members.csv"] == 1.0
    assert 0.99 < outcome.report["coverage"]["train.csv"]["song_id in songs.csv"] <= 1.0


def test_target_outside_0_1_names_column_rows_and_count():
    table = _table(schema.TRAIN, target=[0, 1, 2, 1, 3])
    found, _ = _check(schema.TRAIN, table)
    assert [(f.column, f.count, f.examples) for f in found] == [("target", 2, [(3, 2), (5, 3)])]
    line = found[0].describe("data")
    assert line.startswith("data/train.csv: column 'target' must be 0 or 1: 2 rows fail")
    assert "row 3: 2; row 5: 3" in line


def test_missing_key_duplicate_key_bad_date_and_bad_length():
    members = _table(
        schema.MEMBERS,
        msno=["a", "b", "a", None],
        expiration_date=[20170101, 20171340, 19700101, 20170101],
    )
    found = {f.rule: f for f in _check(schema.MEMBERS, members)[0]}
    assert found["must not be empty"].examples == [(4, None)]
    assert found["must be unique"].count == 1
    assert found["must be unique"].examples == [(1, "a"), (3, "a")]
    assert "must be unique: 1 duplicate row, 1 repeated value (row 1: 'a'; row 3: 'a')" in (
        found["must be unique"].describe("data")
    )
    assert found["must be a valid YYYYMMDD date"].examples == [(2, 20171340)]
    songs = _table(schema.SONGS, song_id=["s1", "s2"], song_length=[0, 1000])
    (bad,) = _check(schema.SONGS, songs)[0]
    assert (bad.column, bad.count, bad.examples) == ("song_length", 1, [(1, 0)])


def test_unknown_categories_and_quirks_are_counted_not_failed():
    train = _table(
        schema.TRAIN,
        source_system_tab=["radio", "null", "brand-new", None],
        source_type=["radio", "radio", "radio", "podcast"],
    )
    found, soft = _check(schema.TRAIN, train)
    assert found == []
    assert soft["source_system_tab"] == {"unknown category": 1, "literal 'null' tab": 1}
    assert soft["source_type"] == {"unknown category": 1}
    members = _table(
        schema.MEMBERS,
        bd=[0, 27, -43, 1051],
        expiration_date=[19700101, 20170101, 20170101, 20170101],
    )
    found, soft = _check(schema.MEMBERS, members)
    assert found == []
    assert soft["bd"] == {"bd 0 (age not given)": 1, "bd outlier (not 0, outside 5..80)": 2}
    assert soft["expiration_date"] == {"expiration 19700101": 1}


@pytest.mark.parametrize(("present", "missing"), [(1, 0), (0, 1)])
def test_single_class_target_is_a_hard_finding(present, missing):
    train = _table(schema.TRAIN, target=[present] * 4)
    (bad,) = validation.check_classes({schema.TRAIN: train})
    assert bad.describe("data") == (
        f"data/train.csv: column 'target' has only class {present} in all 4 rows "
        f"(no {missing}): a model needs both; check the export or the ingested chunks"
    )
    both = _table(schema.TRAIN, target=[0, 1, 1, 1])
    assert validation.check_classes({schema.TRAIN: both}) == []
    outcome = validation.validate({schema.TRAIN: train}, SETTINGS, None)
    assert [f.rule for f in outcome.errors] == [bad.rule]
    with pytest.raises(UserError, match=r"^data/train.csv: column 'target' has only class"):
        stage.fail_on_errors(outcome.errors, Path("data"))


def test_single_class_names_the_rows_when_other_rows_are_broken():
    train = _table(schema.TRAIN, target=[1, 1, 2, None])
    found = {f.rule: f for f in validation.validate({schema.TRAIN: train}, SETTINGS, None).errors}
    assert "has only class 1 in 2 of 4 rows (no 0)" in found
    assert "must be 0 or 1" in found


def test_an_unknown_rule_is_a_programming_error():
    rule = schema.Rule("even", {}, error="must be even")
    columns = {"x": schema.Column(rules=(rule,))}
    with pytest.raises(ValueError, match="unknown rule 'even'"):
        validation.check_table("t.csv", pa.table({"x": [1, 2]}), columns)


def _pandera_failures(declared: pdp.DataFrameSchema, table: pa.Table) -> set[str]:
    frame = table.to_pandas(types_mapper=pd.ArrowDtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # soft checks warn: only hard failures are compared
        try:
            declared.validate(frame, lazy=True)
        except pdp.errors.SchemaErrors as err:
            return set(err.failure_cases["column"].dropna())
    return set()


@pytest.mark.parametrize("name", [schema.TRAIN, schema.MEMBERS, schema.SONGS])
def test_arrow_engine_agrees_with_pandera_pandas(tiny, name):
    """The same declared schema, run by pandera on pandas and by the Arrow engine."""
    table = tiny[name].slice(0, 300)
    assert _pandera_failures(schema.declared()[name], table) == set()
    broken = {
        schema.TRAIN: ("target", pa.array([2] + [0] * 299, pa.int8())),
        schema.MEMBERS: ("expiration_date", pa.array([20171340] * 300, pa.int32())),
        schema.SONGS: ("song_length", pa.array([-1] * 300, pa.int32())),
    }[name]
    bad = table.set_column(table.column_names.index(broken[0]), broken[0], broken[1])
    found, _ = _check(name, bad)
    assert {f.column for f in found} == _pandera_failures(schema.declared()[name], bad)
    assert {f.column for f in found} == {broken[0]}


def test_join_coverage_below_the_minimum_fails():
    members = _table(schema.MEMBERS, msno=["a", "b"])
    songs = _table(schema.SONGS, song_id=["s1", "s2"])
    train = _table(schema.TRAIN, msno=["a", "b", "a", "zz"], song_id=["s1", "s1", "s2", "s2"])
    tables = {schema.TRAIN: train, schema.MEMBERS: members, schema.SONGS: songs}
    found, coverage = validation.check_joins(tables, min_coverage=0.8)
    assert coverage[schema.TRAIN] == {"msno in members.csv": 0.75, "song_id in songs.csv": 1.0}
    (bad,) = found
    assert (bad.column, bad.count, bad.examples) == ("msno", 1, [(4, "zz")])
    assert "only 75.0% do" in bad.describe("data")
    assert validation.check_joins(tables, min_coverage=0.75)[0] == []


# --- profile and drift ------------------------------------------------------------------------


def _profile(mix: dict[str, int], missing: int = 0, positives: float = 0.5) -> dict:
    values = [k for k, n in mix.items() for _ in range(n)] + [None] * missing
    n = len(values)
    train = _table(
        schema.TRAIN, source_type=values, target=[int(i < positives * n) for i in range(n)]
    )
    _, _, counts = validation.check_table(
        schema.TRAIN, train, schema.COLUMNS[schema.TRAIN], frozenset(["source_type"])
    )
    return validation.profile({schema.TRAIN: train}, {schema.TRAIN: counts})


def test_profile_has_rows_missing_rates_category_mix_and_positive_rate():
    prof = _profile({"radio": 3, "album": 1}, missing=1, positives=0.4)
    entry = prof["tables"][schema.TRAIN]
    assert entry["rows"] == 5
    assert entry["missing_rate"]["source_type"] == 0.2
    assert entry["categories"]["source_type"] == {"radio": 0.75, "album": 0.25}
    assert prof["positive_rate"] == 0.4


def test_drift_finds_each_kind_of_anomaly():
    settings = SETTINGS
    reference = _profile({"radio": 50, "album": 50})
    assert validation.drift(_profile({"radio": 52, "album": 48}), reference, settings) == []
    kinds = {
        a["kind"]: a
        for a in validation.drift(
            _profile({"radio": 80, "album": 17, "podcast": 3}, missing=20, positives=0.7),
            reference,
            settings,
        )
    }
    assert set(kinds) == {"category_mix", "new_category", "missing_rate", "positive_rate"}
    assert kinds["new_category"]["values"] == ["podcast"]
    assert kinds["category_mix"]["value"] == pytest.approx(0.33)
    assert "source_type" in kinds["missing_rate"]["message"]


# --- the committed reference and the stage ----------------------------------------------------


def test_committed_reference_is_a_small_scale_profile_of_known_categories():
    reference = json.loads(REFERENCE.read_text(encoding="utf-8"))
    tables = reference["tables"]
    assert set(schema.REQUIRED) <= set(tables)
    assert tables[schema.TRAIN]["rows"] == synth.SCALES["small"].train
    assert 0.4 < reference["positive_rate"] < 0.6
    for name, columns in schema.CATEGORIES.items():
        for col, known in columns.items():
            labels = {validation.category_label(v) for v in known}
            assert set(tables[name]["categories"][col]) <= labels, (name, col)
            assert sum(tables[name]["categories"][col].values()) == pytest.approx(1, abs=1e-4)


def test_renamed_column_is_named_as_such():
    with pytest.raises(UserError) as err:
        check_columns(Path("songs.csv"), ["song_id", "length"], ["song_id", "song_length"])
    first = str(err.value).splitlines()[0]
    assert first == (
        "songs.csv: column 'song_length' is missing, 'length' is in its place: renamed? "
        "rename it back to 'song_length'"
    )


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("name", "header", "row"),
    [
        (
            schema.SONGS,
            "song_id,song_length,genre_ids,artist_name,composer,lyricist,language",
            "s{i},1000,465,a,c,l,52.0",
        ),
        (schema.SONG_EXTRA, "song_id,name,isrc", "s{i},name {i},TW{i:08d}"),
        (
            schema.TRAIN,
            "msno,song_id,source_system_tab,source_screen_name,source_type,target",
            "m{i},s{i},radio,Radio,radio,1",
        ),
    ],
)
def test_repeated_header_line_names_its_row(tmp_path, name, header, row):
    rows = [row.format(i=i) for i in range(1, 200)]
    path = _write(tmp_path / name, [header, *rows[:119], header, *rows[119:]])
    with pytest.raises(UserError) as err:
        read_table(path, name)
    first = str(err.value).splitlines()[0]
    assert first == f"{path}: row 120 repeats the header line (concatenated files?); remove it"
    assert read_table(_write(tmp_path / "ok.csv", [header, *rows]), name).num_rows == 199


def test_a_value_equal_to_a_column_name_is_not_a_header(tmp_path):
    path = _write(tmp_path / "extra.csv", ["song_id,name,isrc", "s1,a,b", "song_id,name,x"])
    assert read_table(path, schema.SONG_EXTRA)["song_id"].to_pylist() == ["s1", "song_id"]


def test_update_reference_then_validate_against_it(tmp_path):
    data = tmp_path / "data"
    for name, columns in synth.generate(synth.SCALES["tiny"], seed=5).items():
        write_csv(columns, data / name)
    params = tmp_path / "params.yaml"
    settings = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    settings["validate"]["drift_severity"] = "fail"
    params.write_text(yaml.safe_dump(settings), encoding="utf-8")
    ref = tmp_path / "profile.json"
    common = ["--data", str(data), "--reference", str(ref), "--params", str(params)]
    stage.main([*common, "--update-reference"])
    assert not (tmp_path / "out").exists()
    stage.main([*common, "--out", str(tmp_path / "out"), "--report", str(tmp_path / "r.json")])
    report = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert report["status"] == "ok" and report["drift"]["anomalies"] == []
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        n.replace(".csv", ".parquet") for n in schema.TABLES
    )
    # A different category mix, with drift_severity: fail, stops the stage: no table is
    # written, and the report says why.
    reference = json.loads(ref.read_text(encoding="utf-8"))
    reference["tables"][schema.TRAIN]["categories"]["source_type"] = {"radio": 1.0}
    ref.write_text(json.dumps(reference), encoding="utf-8")
    tables = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    with pytest.raises(UserError, match=r"data drift against .*'source_type' category mix"):
        stage.main([*common, "--out", str(tmp_path / "out"), "--report", str(tmp_path / "r.json")])
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == tables
    failed = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert failed["status"] == "failed" and failed["errors"][0].startswith("data drift against")
    assert failed["drift"]["anomalies"] and failed["tables"][schema.TRAIN]["rows"] > 0
