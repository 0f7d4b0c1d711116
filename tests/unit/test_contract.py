"""cd4ml.contract: a problem's raw tables as plain data, the rule constructors, YYYYMMDD dates."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pytest

from cd4ml import contract
from cd4ml.contract import Column, Contract, Join, Rule, Table


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
    assert bool(contract.is_yyyymmdd(np.array([value]))[0]) is valid


def test_yyyymmdd_takes_the_years_it_is_given():
    values = np.array([18991231, 19000101, 21001231, 21010101, 20080229, 20120101])
    assert contract.is_yyyymmdd(values).tolist() == [False, True, True, False, True, True]
    assert contract.is_yyyymmdd(values, years=(2000, 2010)).tolist() == [
        False,
        False,
        False,
        False,
        True,
        False,
    ]
    assert contract.is_yyyymmdd(np.array([19000229, 20000229])).tolist() == [False, True]


@pytest.mark.parametrize(
    ("rule", "kind", "stats"),
    [
        (contract.isin((0, 1), error="e"), "isin", {"allowed_values": [0, 1]}),
        (contract.ne("null", error="e"), "not_equal_to", {"value": "null"}),
        (contract.gt(0, error="e"), "greater_than", {"min_value": 0}),
        (contract.ge(0, error="e"), "greater_than_or_equal_to", {"min_value": 0}),
        (
            contract.in_range(0, 1, error="e"),
            "in_range",
            {"min_value": 0, "max_value": 1, "include_min": True, "include_max": True},
        ),
        (
            contract.zero_or_in_range(5, 80, error="e"),
            "zero_or_in_range",
            {"min_value": 5, "max_value": 80},
        ),
        (contract.valid_date(error="e"), "valid_yyyymmdd", {"years": [1900, 2100]}),
        (contract.not_missing(error="e"), "not_missing", {}),
    ],
)
def test_rule_constructors_give_the_check_and_its_statistics(rule, kind, stats):
    assert (rule.kind, rule.stats, rule.error, rule.quirk) == (kind, stats, "e", None)
    assert not rule.soft


def test_a_rule_with_a_quirk_label_is_soft():
    rule = contract.ne(0, quirk="bd 0 (age not given)")
    assert rule.soft and rule.error is None and rule.quirk == "bd 0 (age not given)"
    assert contract.isin([3, 4], quirk="unknown").stats == {"allowed_values": [3, 4]}
    assert contract.valid_date(error="e").stats == {"years": list(contract.DATE_YEARS)}


def test_the_declarations_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Column(pa.int8()).nullable = True  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        contract.gt(0, error="e").kind = "lt"  # type: ignore[misc]


def test_a_category_column_checks_its_known_values_first_as_a_quirk():
    even = Rule("even", {}, error="must be even")
    column = Column(pa.int16(), categories=(1, 2, 3), rules=(even,))
    known, rule = column.checks()
    assert (known.kind, known.stats, known.quirk) == (
        "isin",
        {"allowed_values": [1, 2, 3]},
        "unknown category",
    )
    assert rule is even
    assert Column(pa.int16(), rules=(even,)).checks() == (even,)
    assert Column(pa.string()).checks() == ()


def test_a_column_is_required_and_not_unique_unless_declared():
    column = Column(pa.string())
    assert (column.nullable, column.unique, column.categories, column.rules) == (
        False,
        False,
        (),
        (),
    )


TOY = Contract(
    tables={
        "plays.csv": Table(
            {
                "user": Column(pa.string()),
                "kind": Column(pa.string(), nullable=True, categories=("a", "b")),
                "size": Column(pa.int16(), categories=(1, 2)),
                "label": Column(pa.int8()),
            },
            dictionary=True,
        ),
        "users.csv": Table({"user": Column(pa.string(), unique=True)}),
        "extra.csv": Table({"p": Column(pa.float64())}, required=False),
    },
    examples="plays.csv",
    target="label",
    joins=(Join("plays.csv", "user", "users.csv"),),
)


def test_a_table_gives_its_types_in_order_and_its_category_columns():
    plays = TOY.tables["plays.csv"]
    assert list(plays.types.items()) == [
        ("user", pa.string()),
        ("kind", pa.string()),
        ("size", pa.int16()),
        ("label", pa.int8()),
    ]
    assert plays.categorical == {"kind": ("a", "b"), "size": (1, 2)}
    assert plays.dictionary and plays.required
    users = TOY.tables["users.csv"]
    assert users.categorical == {} and not users.dictionary


def test_a_contract_splits_its_tables_into_required_and_optional_in_declared_order():
    assert TOY.required == ["plays.csv", "users.csv"]
    assert TOY.optional == ["extra.csv"]
    assert (TOY.batch, TOY.id, TOY.truth) == (None, None, None)
    assert TOY.joins == (Join("plays.csv", "user", "users.csv"),)
    assert Contract({"a.csv": Table({})}, examples="a.csv", target="y").joins == ()
