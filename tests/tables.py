"""Tiny tables of KKBox's contract, and fixed validate settings, for the contract tests."""

from __future__ import annotations

import pyarrow as pa

from cd4ml import validation
from kkbox.tables import CONTRACT, MEMBERS

# Fixed thresholds, so that these tests do not move with params.yaml.
SETTINGS = validation.Validate(
    drift_severity="warn",
    max_missing_rate_change=0.1,
    max_category_tvd=0.15,
    max_new_category_share=0.01,
    max_positive_rate_change=0.05,
    min_join_coverage=0.95,
)


def make_table(name: str, **columns: list) -> pa.Table:
    """A table of `name`'s contract: given columns, every other column filled with valid values."""
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
        for col, kind in CONTRACT.tables[name].types.items()
    }
    if name == MEMBERS and "msno" not in columns:
        arrays["msno"] = pa.array([f"m{i}" for i in range(n)])
    return pa.table(arrays)


def check_rules(name: str, data: pa.Table) -> tuple[list[validation.Finding], dict]:
    """The hard findings and the soft (quirk) counts of the table's contract."""
    found, soft, _ = validation.check_table(name, data, CONTRACT.tables[name])
    return found, soft
