"""A problem's raw data contract, as plain data: its tables, their columns and the rules.

What TFDV's schema is to TFX, with pandera's names for the checks. A problem declares its
tables with these types (src/kkbox/tables.py); the loop reads them (cd4ml.reading), checks them
vectorised on Arrow (cd4ml.validation), profiles them for drift, and knows from the contract
which table holds the labelled examples, which one predict scores, and which columns of an input
row are categories. A rule with a `quirk` label is a known quirk of the real data: counted in
the report, never fatal; one with an `error` fails the stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

DATE_YEARS = (1900, 2100)
_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


@dataclass(frozen=True)
class Rule:
    """One check of a column's values. Missing values pass every rule but `not_missing`."""

    kind: str
    stats: dict[str, Any]
    error: str | None = None
    quirk: str | None = None

    @property
    def soft(self) -> bool:
        return self.quirk is not None


@dataclass(frozen=True)
class Column:
    """One column: its Arrow type, whether it may be empty or must be unique, its known values
    when it is a category (counted, profiled for drift; an unknown one is a quirk), and rules."""

    type: pa.DataType
    nullable: bool = False
    unique: bool = False
    categories: tuple = ()
    rules: tuple[Rule, ...] = ()

    def checks(self) -> tuple[Rule, ...]:
        """Every rule of the column, the known-values one first."""
        known = (isin(self.categories, quirk="unknown category"),) if self.categories else ()
        return (*known, *self.rules)


@dataclass(frozen=True)
class Table:
    """One raw file: its columns in order. `dictionary`: text read dictionary-encoded (a table
    of many rows that repeat the same ids: a third of the memory, parsed faster)."""

    columns: dict[str, Column]
    required: bool = True
    dictionary: bool = False

    @property
    def types(self) -> dict[str, pa.DataType]:
        return {name: column.type for name, column in self.columns.items()}

    @property
    def categorical(self) -> dict[str, tuple]:
        """The category columns and their known values."""
        return {name: c.categories for name, c in self.columns.items() if c.categories}


@dataclass(frozen=True)
class Join:
    """Rows of `table` should find their `column` in `other`'s column of the same name."""

    table: str
    column: str
    other: str


@dataclass(frozen=True)
class Contract:
    """Every raw file by name, and the roles the loop needs: `examples` holds the labelled rows
    in time order (split, ingest and the live AUC read it) with the 0/1 column `target`;
    `batch` holds rows to score with an `id` column (predict); `truth`, optional, holds the
    true probability of each example row (synthetic data: the oracle AUC); `time`, optional,
    names the examples' column of when each happened (a date, a timestamp or a YYYYMMDD
    integer): the latest one the model learned from is its data's end (the monitor's age)."""

    tables: dict[str, Table]
    examples: str
    target: str
    batch: str | None = None
    id: str | None = None
    truth: str | None = None
    time: str | None = None
    joins: tuple[Join, ...] = field(default_factory=tuple)

    @property
    def required(self) -> list[str]:
        return [name for name, table in self.tables.items() if table.required]

    @property
    def optional(self) -> list[str]:
        return [name for name, table in self.tables.items() if not table.required]


def is_yyyymmdd(values: np.ndarray, years: tuple[int, int] = DATE_YEARS) -> np.ndarray:
    """Element-wise: is each integer a real calendar date written as YYYYMMDD?"""
    v = np.asarray(values, dtype=np.int64)
    year, month, day = v // 10_000, v // 100 % 100, v % 100
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    last_day = _DAYS_IN_MONTH[np.clip(month, 0, 12)] + (leap & (month == 2))
    in_years = (year >= years[0]) & (year <= years[1])
    return in_years & (month >= 1) & (month <= 12) & (day >= 1) & (day <= last_day)


def isin(values: tuple | list, **label: str) -> Rule:
    return Rule("isin", {"allowed_values": list(values)}, **label)


def ne(value: Any, **label: str) -> Rule:
    return Rule("not_equal_to", {"value": value}, **label)


def gt(value: Any, **label: str) -> Rule:
    return Rule("greater_than", {"min_value": value}, **label)


def ge(value: Any, **label: str) -> Rule:
    return Rule("greater_than_or_equal_to", {"min_value": value}, **label)


def in_range(low: Any, high: Any, **label: str) -> Rule:
    stats = {"min_value": low, "max_value": high, "include_min": True, "include_max": True}
    return Rule("in_range", stats, **label)


def zero_or_in_range(low: Any, high: Any, **label: str) -> Rule:
    return Rule("zero_or_in_range", {"min_value": low, "max_value": high}, **label)


def valid_date(**label: str) -> Rule:
    return Rule("valid_yyyymmdd", {"years": list(DATE_YEARS)}, **label)


def not_missing(**label: str) -> Rule:
    return Rule("not_missing", {}, **label)
