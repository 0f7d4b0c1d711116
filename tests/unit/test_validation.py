"""cd4ml.validation: the contract run on Arrow, join coverage, truth, classes, profile, drift."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from cd4ml import validation
from cd4ml.contract import Column, Rule, Table
from cd4ml.io import UserError
from kkbox.tables import CONTRACT, GENDERS, MEMBERS, SONG_EXTRA, SONGS, TRAIN, TRUTH
from tests.project import ROOT
from tests.tables import SETTINGS, check_rules, make_table


def test_the_stage_does_not_import_pandas():
    code = "import sys, validate; assert 'pandas' not in sys.modules, 'pandas imported'"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT / "src", check=True)


# --- the Arrow engine -------------------------------------------------------------------------


def test_target_outside_0_1_names_column_rows_and_count():
    table = make_table(TRAIN, target=[0, 1, 2, 1, 3])
    found, _ = check_rules(TRAIN, table)
    assert [(f.column, f.count, f.examples) for f in found] == [("target", 2, [(3, 2), (5, 3)])]
    line = found[0].describe("data")
    assert line.startswith("data/train.csv: column 'target' must be 0 or 1: 2 rows fail")
    assert "row 3: 2; row 5: 3" in line


def test_missing_key_duplicate_key_bad_date_and_bad_length():
    members = make_table(
        MEMBERS,
        msno=["a", "b", "a", None],
        expiration_date=[20170101, 20171340, 19700101, 20170101],
    )
    found = {f.rule: f for f in check_rules(MEMBERS, members)[0]}
    assert found["must not be empty"].examples == [(4, None)]
    assert found["must be unique"].count == 1
    assert found["must be unique"].examples == [(1, "a"), (3, "a")]
    assert "must be unique: 1 duplicate row, 1 repeated value (row 1: 'a'; row 3: 'a')" in (
        found["must be unique"].describe("data")
    )
    assert found["must be a valid YYYYMMDD date"].examples == [(2, 20171340)]
    songs = make_table(SONGS, song_id=["s1", "s2"], song_length=[0, 1000])
    (bad,) = check_rules(SONGS, songs)[0]
    assert (bad.column, bad.count, bad.examples) == ("song_length", 1, [(1, 0)])


def test_unknown_categories_and_quirks_are_counted_not_failed():
    train = make_table(
        TRAIN,
        source_system_tab=["radio", "null", "brand-new", None],
        source_type=["radio", "radio", "radio", "podcast"],
    )
    found, soft = check_rules(TRAIN, train)
    assert found == []
    assert soft["source_system_tab"] == {"unknown category": 1, "literal 'null' tab": 1}
    assert soft["source_type"] == {"unknown category": 1}
    members = make_table(
        MEMBERS,
        bd=[0, 27, -43, 1051],
        expiration_date=[19700101, 20170101, 20170101, 20170101],
    )
    found, soft = check_rules(MEMBERS, members)
    assert found == []
    assert soft["bd"] == {"bd 0 (age not given)": 1, "bd outlier (not 0, outside 5..80)": 2}
    assert soft["expiration_date"] == {"expiration 19700101": 1}


def _dictionary_text(table: pa.Table) -> pa.Table:
    """The table as cd4ml.reading reads a play table for validate: text dictionary-encoded."""
    return pa.table(
        {
            name: column.dictionary_encode() if pa.types.is_string(column.type) else column
            for name, column in zip(table.column_names, table.columns, strict=True)
        }
    )


def test_dictionary_encoded_text_is_checked_as_the_text_itself():
    train = make_table(
        TRAIN,
        msno=["m1", None, "m2", "m1"],
        source_system_tab=["radio", "null", "brand-new", None],
        source_type=["radio", "radio", "radio", "podcast"],
        target=[0, 1, 2, 1],
    )
    plain, encoded = (
        check_rules(TRAIN, train),
        check_rules(TRAIN, _dictionary_text(train)),
    )
    assert [f.describe("data") for f in encoded[0]] == [f.describe("data") for f in plain[0]]
    assert len(plain[0]) == 2 and encoded[1] == plain[1]
    _, _, counts = validation.check_table(TRAIN, _dictionary_text(train), CONTRACT.tables[TRAIN])
    assert counts["source_type"].field("values").type == pa.string()


@pytest.mark.parametrize(("present", "missing"), [(1, 0), (0, 1)])
def test_single_class_target_is_a_hard_finding(present, missing):
    train = make_table(TRAIN, target=[present] * 4)
    (bad,) = validation.check_classes({TRAIN: train}, CONTRACT)
    assert bad.describe("data") == (
        f"data/train.csv: column 'target' has only class {present} in all 4 rows "
        f"(no {missing}): a model needs both; check the export or the ingested chunks"
    )
    both = make_table(TRAIN, target=[0, 1, 1, 1])
    assert validation.check_classes({TRAIN: both}, CONTRACT) == []
    outcome = validation.validate({TRAIN: train}, CONTRACT, SETTINGS, None)
    assert [f.rule for f in outcome.errors] == [bad.rule]
    with pytest.raises(UserError, match=r"^data/train.csv: column 'target' has only class"):
        validation.fail_on_errors(outcome.errors, Path("data"))


def test_single_class_names_the_rows_when_other_rows_are_broken():
    train = make_table(TRAIN, target=[1, 1, 2, None])
    found = {
        f.rule: f for f in validation.validate({TRAIN: train}, CONTRACT, SETTINGS, None).errors
    }
    assert "has only class 1 in 2 of 4 rows (no 0)" in found
    assert "must be 0 or 1" in found


def test_an_unknown_rule_is_a_programming_error():
    rule = Rule("even", {}, error="must be even")
    spec = Table({"x": Column(pa.int64(), rules=(rule,))})
    with pytest.raises(ValueError, match="unknown rule 'even'"):
        validation.check_table("t.csv", pa.table({"x": [1, 2]}), spec)


def test_join_coverage_below_the_minimum_fails():
    members = make_table(MEMBERS, msno=["a", "b"])
    songs = make_table(SONGS, song_id=["s1", "s2"])
    train = make_table(TRAIN, msno=["a", "b", "a", "zz"], song_id=["s1", "s1", "s2", "s2"])
    tables = {TRAIN: train, MEMBERS: members, SONGS: songs}
    found, coverage = validation.check_joins(tables, CONTRACT.joins, min_coverage=0.8)
    assert coverage[TRAIN] == {"msno in members.csv": 0.75, "song_id in songs.csv": 1.0}
    (bad,) = found
    assert (bad.column, bad.count, bad.examples) == ("msno", 1, [(4, "zz")])
    assert "only 75.0% do" in bad.describe("data")
    assert validation.check_joins(tables, CONTRACT.joins, min_coverage=0.75)[0] == []
    # The plays as validate reads them (text dictionary-encoded): the same finding.
    encoded = {**tables, TRAIN: _dictionary_text(train)}
    (same,) = validation.check_joins(encoded, CONTRACT.joins, min_coverage=0.8)[0]
    assert same.describe("data") == bad.describe("data")


# --- profile and drift ------------------------------------------------------------------------


def _profile(mix: dict[str, int], missing: int = 0, positives: float = 0.5) -> dict:
    values = [k for k, n in mix.items() for _ in range(n)] + [None] * missing
    n = len(values)
    train = make_table(
        TRAIN, source_type=values, target=[int(i < positives * n) for i in range(n)]
    )
    _, _, counts = validation.check_table(TRAIN, train, CONTRACT.tables[TRAIN])
    label = (CONTRACT.examples, CONTRACT.target)
    return validation.profile({TRAIN: train}, {TRAIN: counts}, label)


def test_profile_has_rows_missing_rates_category_mix_and_positive_rate():
    prof = _profile({"radio": 3, "album": 1}, missing=1, positives=0.4)
    entry = prof["tables"][TRAIN]
    assert entry["rows"] == 5
    assert entry["missing_rate"]["source_type"] == 0.2
    assert entry["categories"]["source_type"] == {"radio": 0.75, "album": 0.25}
    assert prof["positive_rate"] == 0.4


def _drift(current: dict, reference: dict) -> list[dict]:
    known = validation.known_categories(CONTRACT)
    return validation.drift(current, reference, SETTINGS, known, CONTRACT.examples)


def test_drift_finds_each_kind_of_anomaly():
    reference = _profile({"radio": 50, "album": 50})
    assert _drift(_profile({"radio": 52, "album": 48}), reference) == []
    kinds = {
        a["kind"]: a
        for a in _drift(
            _profile({"radio": 80, "album": 17, "podcast": 3}, missing=20, positives=0.7),
            reference,
        )
    }
    assert set(kinds) == {"category_mix", "new_category", "missing_rate", "positive_rate"}
    assert kinds["new_category"]["values"] == ["podcast"]
    assert kinds["new_category"]["table"] == TRAIN
    assert kinds["category_mix"]["value"] == pytest.approx(0.33)
    assert "source_type" in kinds["missing_rate"]["message"]
    assert (kinds["positive_rate"]["table"], kinds["positive_rate"]["column"]) == (
        CONTRACT.examples,
        CONTRACT.target,
    )


def test_a_category_the_contract_knows_is_no_new_category():
    reference = _profile({"radio": 50, "album": 50})
    # "song" is in the contract's SOURCE_TYPES, though the reference never saw it.
    current = _profile({"radio": 48, "album": 47, "song": 5})
    assert [a["kind"] for a in _drift(current, reference)] == []
    without = validation.drift(current, reference, SETTINGS, {}, CONTRACT.examples)
    assert [(a["kind"], a["values"]) for a in without] == [("new_category", ["song"])]


def test_known_categories_are_the_contracts_by_table():
    known = validation.known_categories(CONTRACT)
    assert set(known) == set(CONTRACT.tables)
    assert known[MEMBERS]["gender"] == GENDERS
    assert known[SONG_EXTRA] == {}


def test_the_truth_file_must_match_the_examples_row_by_row():
    train = make_table(TRAIN, target=[0, 1, 1])
    truth = make_table(TRUTH, target_probability=[0.1, 0.9])
    (bad,) = validation.check_truth({TRAIN: train, TRUTH: truth}, CONTRACT)
    assert bad.describe("data") == (
        "data/train_truth.csv: must have one row per train.csv row (3), has 2; regenerate "
        "both with `make data` or delete it: 1 row fails"
    )
    same = make_table(TRUTH, target_probability=[0.1, 0.9, 0.5])
    assert validation.check_truth({TRAIN: train, TRUTH: same}, CONTRACT) == []
    assert validation.check_truth({TRAIN: train}, CONTRACT) == []


def test_validate_reports_drift_only_against_a_reference():
    train = make_table(TRAIN, source_type=["radio", "album"] * 50, target=[0, 1] * 50)
    tables = {TRAIN: train}
    alone = validation.validate(tables, CONTRACT, SETTINGS, None)
    assert (alone.errors, alone.anomalies, alone.report["status"]) == ([], [], "ok")
    assert alone.report["drift"]["compared"] is False and not alone.report["has_truth"]
    assert alone.profile["positive_rate"] == 0.5
    moved = make_table(TRAIN, source_type=["radio"] * 100, target=[0, 1] * 50)
    outcome = validation.validate({TRAIN: moved}, CONTRACT, SETTINGS, alone.profile)
    assert [a["kind"] for a in outcome.anomalies] == ["category_mix"]
    assert outcome.report["status"] == "drift"
    validation.judge(outcome, SETTINGS, Path("data"), Path("reference/profile.json"))
    strict = SETTINGS.model_copy(update={"drift_severity": "fail"})
    with pytest.raises(UserError, match=r"^data drift against reference/profile.json: "):
        validation.judge(outcome, strict, Path("data"), Path("reference/profile.json"))


def test_load_reference_says_how_to_make_one(tmp_path):
    path = tmp_path / "profile.json"
    with pytest.raises(UserError, match=r"profile.json: reference profile not found; make it"):
        validation.load_reference(path)
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(UserError, match=r"profile.json: not valid JSON .*`make reference`"):
        validation.load_reference(path)
    path.write_text('{"rows": 3}', encoding="utf-8")
    with pytest.raises(UserError, match=r"not a profile \(no 'tables'\)"):
        validation.load_reference(path)
    path.write_text('{"tables": {}}', encoding="utf-8")
    assert validation.load_reference(path) == {"tables": {}}
