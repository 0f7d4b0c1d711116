"""kkbox.validation: the Arrow engine of the declared rules, join coverage, profile and drift."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from cd4ml import validation
from kkbox import schema
from cd4ml.io import UserError
from tests.project import ROOT
from tests.tables import SETTINGS, check_rules, make_table


def test_the_stage_does_not_import_pandas():
    code = "import sys, validate; assert 'pandas' not in sys.modules, 'pandas imported'"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT / "src", check=True)


# --- the Arrow engine -------------------------------------------------------------------------


def test_target_outside_0_1_names_column_rows_and_count():
    table = make_table(schema.TRAIN, target=[0, 1, 2, 1, 3])
    found, _ = check_rules(schema.TRAIN, table)
    assert [(f.column, f.count, f.examples) for f in found] == [("target", 2, [(3, 2), (5, 3)])]
    line = found[0].describe("data")
    assert line.startswith("data/train.csv: column 'target' must be 0 or 1: 2 rows fail")
    assert "row 3: 2; row 5: 3" in line


def test_missing_key_duplicate_key_bad_date_and_bad_length():
    members = make_table(
        schema.MEMBERS,
        msno=["a", "b", "a", None],
        expiration_date=[20170101, 20171340, 19700101, 20170101],
    )
    found = {f.rule: f for f in check_rules(schema.MEMBERS, members)[0]}
    assert found["must not be empty"].examples == [(4, None)]
    assert found["must be unique"].count == 1
    assert found["must be unique"].examples == [(1, "a"), (3, "a")]
    assert "must be unique: 1 duplicate row, 1 repeated value (row 1: 'a'; row 3: 'a')" in (
        found["must be unique"].describe("data")
    )
    assert found["must be a valid YYYYMMDD date"].examples == [(2, 20171340)]
    songs = make_table(schema.SONGS, song_id=["s1", "s2"], song_length=[0, 1000])
    (bad,) = check_rules(schema.SONGS, songs)[0]
    assert (bad.column, bad.count, bad.examples) == ("song_length", 1, [(1, 0)])


def test_unknown_categories_and_quirks_are_counted_not_failed():
    train = make_table(
        schema.TRAIN,
        source_system_tab=["radio", "null", "brand-new", None],
        source_type=["radio", "radio", "radio", "podcast"],
    )
    found, soft = check_rules(schema.TRAIN, train)
    assert found == []
    assert soft["source_system_tab"] == {"unknown category": 1, "literal 'null' tab": 1}
    assert soft["source_type"] == {"unknown category": 1}
    members = make_table(
        schema.MEMBERS,
        bd=[0, 27, -43, 1051],
        expiration_date=[19700101, 20170101, 20170101, 20170101],
    )
    found, soft = check_rules(schema.MEMBERS, members)
    assert found == []
    assert soft["bd"] == {"bd 0 (age not given)": 1, "bd outlier (not 0, outside 5..80)": 2}
    assert soft["expiration_date"] == {"expiration 19700101": 1}


def _dictionary_text(table: pa.Table) -> pa.Table:
    """The table as kkbox.raw reads a play table for validate: text dictionary-encoded."""
    return pa.table(
        {
            name: column.dictionary_encode() if pa.types.is_string(column.type) else column
            for name, column in zip(table.column_names, table.columns, strict=True)
        }
    )


def test_dictionary_encoded_text_is_checked_as_the_text_itself():
    train = make_table(
        schema.TRAIN,
        msno=["m1", None, "m2", "m1"],
        source_system_tab=["radio", "null", "brand-new", None],
        source_type=["radio", "radio", "radio", "podcast"],
        target=[0, 1, 2, 1],
    )
    plain, encoded = (
        check_rules(schema.TRAIN, train),
        check_rules(schema.TRAIN, _dictionary_text(train)),
    )
    assert [f.describe("data") for f in encoded[0]] == [f.describe("data") for f in plain[0]]
    assert len(plain[0]) == 2 and encoded[1] == plain[1]
    categorical = frozenset(schema.CATEGORIES[schema.TRAIN])
    _, _, counts = validation.check_table(
        schema.TRAIN, _dictionary_text(train), schema.COLUMNS[schema.TRAIN], categorical
    )
    assert counts["source_type"].field("values").type == pa.string()


@pytest.mark.parametrize(("present", "missing"), [(1, 0), (0, 1)])
def test_single_class_target_is_a_hard_finding(present, missing):
    train = make_table(schema.TRAIN, target=[present] * 4)
    (bad,) = validation.check_classes({schema.TRAIN: train})
    assert bad.describe("data") == (
        f"data/train.csv: column 'target' has only class {present} in all 4 rows "
        f"(no {missing}): a model needs both; check the export or the ingested chunks"
    )
    both = make_table(schema.TRAIN, target=[0, 1, 1, 1])
    assert validation.check_classes({schema.TRAIN: both}) == []
    outcome = validation.validate({schema.TRAIN: train}, SETTINGS, None)
    assert [f.rule for f in outcome.errors] == [bad.rule]
    with pytest.raises(UserError, match=r"^data/train.csv: column 'target' has only class"):
        validation.fail_on_errors(outcome.errors, Path("data"))


def test_single_class_names_the_rows_when_other_rows_are_broken():
    train = make_table(schema.TRAIN, target=[1, 1, 2, None])
    found = {f.rule: f for f in validation.validate({schema.TRAIN: train}, SETTINGS, None).errors}
    assert "has only class 1 in 2 of 4 rows (no 0)" in found
    assert "must be 0 or 1" in found


def test_an_unknown_rule_is_a_programming_error():
    rule = schema.Rule("even", {}, error="must be even")
    columns = {"x": schema.Column(rules=(rule,))}
    with pytest.raises(ValueError, match="unknown rule 'even'"):
        validation.check_table("t.csv", pa.table({"x": [1, 2]}), columns)


def test_join_coverage_below_the_minimum_fails():
    members = make_table(schema.MEMBERS, msno=["a", "b"])
    songs = make_table(schema.SONGS, song_id=["s1", "s2"])
    train = make_table(schema.TRAIN, msno=["a", "b", "a", "zz"], song_id=["s1", "s1", "s2", "s2"])
    tables = {schema.TRAIN: train, schema.MEMBERS: members, schema.SONGS: songs}
    found, coverage = validation.check_joins(tables, min_coverage=0.8)
    assert coverage[schema.TRAIN] == {"msno in members.csv": 0.75, "song_id in songs.csv": 1.0}
    (bad,) = found
    assert (bad.column, bad.count, bad.examples) == ("msno", 1, [(4, "zz")])
    assert "only 75.0% do" in bad.describe("data")
    assert validation.check_joins(tables, min_coverage=0.75)[0] == []
    # The plays as validate reads them (text dictionary-encoded): the same finding.
    encoded = {**tables, schema.TRAIN: _dictionary_text(train)}
    (same,) = validation.check_joins(encoded, min_coverage=0.8)[0]
    assert same.describe("data") == bad.describe("data")


# --- profile and drift ------------------------------------------------------------------------


def _profile(mix: dict[str, int], missing: int = 0, positives: float = 0.5) -> dict:
    values = [k for k, n in mix.items() for _ in range(n)] + [None] * missing
    n = len(values)
    train = make_table(
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
