"""kkbox.tables: the one declaration of KKBox's raw tables (types, order, rules, roles), Play."""

from __future__ import annotations

import pyarrow as pa
import pytest
from pydantic import ValidationError

from cd4ml.contract import Contract
from kkbox import tables
from kkbox.tables import CONTRACT
from tests.data.test_generated_data import KAGGLE_COLUMNS


def test_the_contract_declares_every_file_with_its_columns_in_order():
    assert isinstance(CONTRACT, Contract)
    assert CONTRACT.required == [
        tables.TRAIN,
        tables.TEST,
        tables.MEMBERS,
        tables.SONGS,
        tables.SONG_EXTRA,
    ]
    assert CONTRACT.optional == [tables.TRUTH]
    # Kaggle's files, column for column (the generated data is checked against the same list).
    for name, columns in KAGGLE_COLUMNS.items():
        assert list(CONTRACT.tables[name].types) == columns, name
    assert CONTRACT.tables[tables.SONGS].types["language"] == pa.float32()
    assert CONTRACT.tables[tables.MEMBERS].columns["msno"].unique
    assert CONTRACT.tables[tables.SONGS].columns["song_id"].unique
    assert CONTRACT.tables[tables.TEST].columns["id"].unique


def test_the_roles_name_declared_tables_and_columns():
    assert CONTRACT.examples == tables.TRAIN and CONTRACT.batch == tables.TEST
    assert CONTRACT.truth == tables.TRUTH
    assert CONTRACT.target in CONTRACT.tables[CONTRACT.examples].columns
    assert CONTRACT.id in CONTRACT.tables[CONTRACT.batch].columns
    # The play tables repeat the same ids: read dictionary-encoded, the small tables not.
    dictionary = [name for name, table in CONTRACT.tables.items() if table.dictionary]
    assert dictionary == [tables.TRAIN, tables.TEST]


def test_the_sources_are_one_declaration_shared_by_train_and_test():
    for name in (tables.TRAIN, tables.TEST):
        columns = CONTRACT.tables[name].columns
        assert {c: columns[c] for c in tables.SOURCES} == tables.SOURCES
    assert all(column.nullable for column in tables.SOURCES.values())


def test_every_declared_rule_is_either_hard_or_soft():
    for name, table in CONTRACT.tables.items():
        for col, column in table.columns.items():
            for rule in column.rules:
                assert (rule.error is None) != (rule.quirk is None), (name, col, rule)


def test_every_categorical_column_counts_its_unknown_values_as_a_quirk():
    categorical = {name: table.categorical for name, table in CONTRACT.tables.items()}
    assert categorical[tables.MEMBERS] == {
        "city": tables.CITIES,
        "gender": tables.GENDERS,
        "registered_via": tables.REGISTERED_VIA,
    }
    assert categorical[tables.SONGS] == {"language": tables.LANGUAGES}
    assert set(categorical[tables.TRAIN]) == set(tables.SOURCES)
    for name, columns in categorical.items():
        for col, known in columns.items():
            rules = [r for r in CONTRACT.tables[name].columns[col].checks() if r.kind == "isin"]
            assert [(r.stats["allowed_values"], r.quirk) for r in rules] == [
                (list(known), "unknown category")
            ], (name, col)


def test_joins_name_declared_columns_and_unique_keys():
    assert CONTRACT.joins
    for join in CONTRACT.joins:
        assert join.column in CONTRACT.tables[join.table].columns
        assert CONTRACT.tables[join.other].columns[join.column].unique, join


def test_play_is_one_raw_row_of_the_batch_table_without_its_id():
    play = tables.Play(
        msno="m1", song_id="s1", source_system_tab=None, source_screen_name="Radio",
        source_type="radio", target=1,
    )  # fmt: skip
    assert play.model_dump() == {
        "msno": "m1",
        "song_id": "s1",
        "source_system_tab": None,
        "source_screen_name": "Radio",
        "source_type": "radio",
    }
    batch = CONTRACT.tables[CONTRACT.batch].columns
    assert list(tables.Play.model_fields) == [c for c in batch if c != CONTRACT.id]


NULL_SOURCES = {"source_system_tab": None, "source_screen_name": None, "source_type": None}


@pytest.mark.parametrize(
    "bad",
    [
        {**NULL_SOURCES, "msno": "", "song_id": "s1"},
        {**NULL_SOURCES, "song_id": "s1"},
        {**NULL_SOURCES, "msno": "m1", "song_id": "s1", "source_type": 3},
        {"msno": "m1", "song_id": "s1", "source_system_tab": None, "source_type": None},
    ],
    ids=["empty id", "missing member", "number for text", "source field left out"],
)
def test_play_refuses_an_empty_id_a_missing_field_or_a_wrong_type(bad):
    tables.Play(**{**bad, **{"msno": "m1", "song_id": "s1"}, **NULL_SOURCES})  # the fix passes
    with pytest.raises(ValidationError):
        tables.Play(**bad)
