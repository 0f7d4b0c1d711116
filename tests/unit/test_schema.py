"""kkbox.schema: the one declaration of the raw tables (dtypes, order, rules) and its helpers."""

from __future__ import annotations

import numpy as np
import pytest

from kkbox import schema


def test_the_contract_matches_the_read_types_and_order():
    """One declaration: the columns the CSVs are read with are the columns the rules check."""
    assert set(schema.COLUMNS) == set(schema.TABLES)
    for name, columns in schema.TABLES.items():
        assert list(schema.COLUMNS[name]) == list(columns)
    assert schema.COLUMNS[schema.MEMBERS]["msno"].unique
    assert schema.COLUMNS[schema.SONGS]["song_id"].unique
    assert schema.COLUMNS[schema.TEST]["id"].unique


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


def test_yyyymmdd_takes_the_years_it_is_given():
    values = np.array([18991231, 19000101, 21001231, 21010101, 20080229, 20120101])
    assert schema.is_yyyymmdd(values).tolist() == [False, True, True, False, True, True]
    assert schema.is_yyyymmdd(values, years=(2000, 2010)).tolist() == [
        False,
        False,
        False,
        False,
        True,
        False,
    ]
    assert schema.is_yyyymmdd(np.array([19000229, 20000229])).tolist() == [False, True]


@pytest.mark.parametrize(
    ("rule", "kind", "stats"),
    [
        (schema.isin((0, 1), error="e"), "isin", {"allowed_values": [0, 1]}),
        (schema.ne("null", error="e"), "not_equal_to", {"value": "null"}),
        (schema.gt(0, error="e"), "greater_than", {"min_value": 0}),
        (schema.ge(0, error="e"), "greater_than_or_equal_to", {"min_value": 0}),
        (
            schema.in_range(0, 1, error="e"),
            "in_range",
            {"min_value": 0, "max_value": 1, "include_min": True, "include_max": True},
        ),
        (
            schema.zero_or_in_range(5, 80, error="e"),
            "zero_or_in_range",
            {"min_value": 5, "max_value": 80},
        ),
        (schema.valid_date(error="e"), "valid_yyyymmdd", {"years": [1900, 2100]}),
        (schema.not_missing(error="e"), "not_missing", {}),
    ],
)
def test_rule_constructors_give_the_check_and_its_statistics(rule, kind, stats):
    assert (rule.kind, rule.stats, rule.error, rule.quirk) == (kind, stats, "e", None)
    assert not rule.soft


def test_a_rule_with_a_quirk_label_is_soft():
    rule = schema.ne(0, quirk="bd 0 (age not given)")
    assert rule.soft and rule.error is None and rule.quirk == "bd 0 (age not given)"
    assert schema.isin([3, 4], quirk="unknown").stats == {"allowed_values": [3, 4]}


def test_every_declared_rule_is_either_hard_or_soft():
    for name, columns in schema.COLUMNS.items():
        for col, column in columns.items():
            for rule in column.rules:
                assert (rule.error is None) != (rule.quirk is None), (name, col, rule)


def test_every_categorical_column_counts_its_unknown_values_as_a_quirk():
    for name, columns in schema.CATEGORIES.items():
        for col, known in columns.items():
            rules = [r for r in schema.COLUMNS[name][col].rules if r.kind == "isin"]
            assert [(r.stats["allowed_values"], r.quirk) for r in rules] == [
                (list(known), "unknown category")
            ], (name, col)


def test_joins_name_declared_columns_and_unique_keys():
    for name, col, other in schema.JOINS:
        assert col in schema.TABLES[name] and col in schema.TABLES[other]
        assert schema.COLUMNS[other][col].unique, (other, col)
    assert set(schema.REQUIRED) | set(schema.OPTIONAL) == set(schema.TABLES)
