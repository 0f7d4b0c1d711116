"""Data validation of the raw tables: the problem's contract, run vectorised on Arrow, and drift.

The layers, from the cheapest:
- the contract (cd4ml.contract, declared by the problem): dtypes, nullability, keys, value
  domains. Hard rules
  fail the stage; soft ones (the real data's known quirks) are only counted. The rules run with
  pyarrow.compute on the Arrow tables, on the distinct values of categorical columns; pandas is
  never imported.
- referential coverage: the share of rows whose key joins the table it refers to (Join).
- table-wide rules: the examples' target holds both classes (all 1 or all 0 cannot train a
  model), the truth file (synthetic data) has one row per example row.
- drift: a profile (row counts, missing rates, category mixes, positive rate) compared with a
  reference profile committed to git; anomalies warn or fail (validate.drift_severity).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cd4ml.contract import Contract, Join, Rule, Table, is_yyyymmdd
from cd4ml.io import UserError
from cd4ml.params import Fraction, Section

log = logging.getLogger(__name__)

EXAMPLES = 5


class Validate(Section):
    """Stage validate: what drift against the reference profile does, and its thresholds."""

    drift_severity: Literal["warn", "fail"]
    max_missing_rate_change: Fraction  # a column's missing rate vs the reference (absolute)
    max_category_tvd: Fraction  # total variation distance of a category mix vs the reference
    max_new_category_share: Fraction  # share of values unknown to the contract and reference
    max_positive_rate_change: Fraction
    min_join_coverage: Fraction  # share of rows whose key must find its row in the other table

    def thresholds(self) -> dict[str, float]:
        """The numeric settings, as the report shows them."""
        return {k: v for k, v in self.model_dump().items() if k != "drift_severity"}


@dataclass
class Finding:
    """A hard violation: `count` rows of one table break one rule (examples: row, value)."""

    table: str
    column: str | None
    rule: str
    count: int
    examples: list[tuple[int, Any]] = field(default_factory=list)
    counted: str | None = None  # how `count` reads, when not "N rows fail"

    def describe(self, folder: Path | str) -> str:
        """One line naming the file, column, rule, count and example rows (1 = first data row)."""
        where = f"{Path(folder) / self.table}: "
        if self.column is not None:
            where += f"column {self.column!r} "
        shown = "; ".join(f"row {row}: {_show(value)}" for row, value in self.examples)
        more = "; ..." if self.count > len(self.examples) else ""
        rows = self.counted or (
            f"{self.count} row fails" if self.count == 1 else f"{self.count} rows fail"
        )
        return f"{where}{self.rule}: {rows}" + (f" ({shown}{more})" if shown else "")


@dataclass
class Outcome:
    """What validating a set of tables found: hard errors, drift anomalies, the report."""

    errors: list[Finding]
    anomalies: list[dict[str, Any]]
    report: dict[str, Any]
    profile: dict[str, Any]


def _show(value: Any) -> str:
    if value is None:
        return "empty"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def category_label(value: Any) -> str:
    """A category value as a JSON key: 52.0 -> '52', 7 -> '7', 'radio' -> 'radio'."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _examples(column: pa.ChunkedArray, failing: pa.ChunkedArray | pa.Array) -> list[tuple]:
    """The first rows (1-based) where `failing` is true, with their values."""
    index = pc.indices_nonzero(failing).slice(0, EXAMPLES)
    values = pc.take(column, index).to_pylist()
    return [(i + 1, v) for i, v in zip(index.to_pylist(), values, strict=True)]


def _count(mask: pa.ChunkedArray | pa.Array) -> int:
    return int(pc.sum(mask, min_count=0).as_py() or 0)


# --- the contract, run on Arrow ---------------------------------------------------------------


def _scalar(value: Any, kind: pa.DataType) -> pa.Scalar:
    return pa.scalar(value).cast(kind)


_COMPARE = {
    "equal_to": ("value", pc.equal),
    "not_equal_to": ("value", pc.not_equal),
    "greater_than": ("min_value", pc.greater),
    "greater_than_or_equal_to": ("min_value", pc.greater_equal),
    "less_than": ("max_value", pc.less),
    "less_than_or_equal_to": ("max_value", pc.less_equal),
}


def _passes(rule: Rule, values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Where each value passes `rule`; missing values pass, except for `not_missing`."""
    stats, kind = rule.stats, values.type
    if rule.kind == "not_missing":
        return pc.is_valid(values)
    if rule.kind in _COMPARE:
        key, op = _COMPARE[rule.kind]
        result = op(values, _scalar(stats[key], kind))
    elif rule.kind == "isin":
        result = pc.is_in(values, value_set=pa.array(stats["allowed_values"]).cast(kind))
    elif rule.kind == "in_range":
        low = (pc.greater_equal if stats["include_min"] else pc.greater)(
            values, _scalar(stats["min_value"], kind)
        )
        high = (pc.less_equal if stats["include_max"] else pc.less)(
            values, _scalar(stats["max_value"], kind)
        )
        result = pc.and_(low, high)
    elif rule.kind == "zero_or_in_range":
        low = pc.greater_equal(values, _scalar(stats["min_value"], kind))
        high = pc.less_equal(values, _scalar(stats["max_value"], kind))
        result = pc.or_(pc.equal(values, _scalar(0, kind)), pc.and_(low, high))
    elif rule.kind == "valid_yyyymmdd":
        ok = is_yyyymmdd(pc.fill_null(values, 0).to_numpy(), tuple(stats["years"]))
        result = pa.array(ok)
    else:
        raise ValueError(f"unknown rule {rule.kind!r}: add it to cd4ml.validation._passes")
    return pc.if_else(pc.is_null(values), True, result)


def _value_counts(column: pa.ChunkedArray) -> pa.StructArray:
    """pc.value_counts with plain values, also of a dictionary-encoded column."""
    counts = pc.value_counts(column)
    values = counts.field("values")
    if not pa.types.is_dictionary(values.type):
        return counts
    return pa.StructArray.from_arrays(
        [values.cast(values.type.value_type), counts.field("counts")], ["values", "counts"]
    )


def check_table(
    name: str, table: pa.Table, spec: Table
) -> tuple[list[Finding], dict[str, dict[str, int]], dict[str, pa.StructArray]]:
    """Run one table's contract: hard findings, soft counts per column, value counts computed.

    Category columns are counted once (pc.value_counts) and their rules run on the distinct
    values only; the counts are returned for the profile.
    """
    findings: list[Finding] = []
    soft: dict[str, dict[str, int]] = {}
    counts: dict[str, pa.StructArray] = {}
    expected = list(spec.columns)
    if table.column_names != expected:
        raise UserError(f"{name}: columns {table.column_names}; the contract expects {expected}")
    for col_name, column_spec in spec.columns.items():
        column = table[col_name]
        want = column_spec.type
        # Text read dictionary-encoded (cd4ml.reading) holds the declared type's values.
        kind = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
        if kind != want:
            findings.append(
                Finding(name, col_name, f"must be of type {want}, not {column.type}", len(column))
            )
            continue
        if not column_spec.nullable and column.null_count:
            empty = pc.is_null(column)
            findings.append(
                Finding(
                    name,
                    col_name,
                    "must not be empty",
                    column.null_count,
                    _examples(column, empty),
                )
            )
        if column_spec.unique:
            findings.extend(_check_unique(name, col_name, column))
        vc = _value_counts(column) if column_spec.categories else None
        if vc is not None:
            counts[col_name] = vc
        for rule in column_spec.checks():
            if vc is not None:
                distinct = vc.field("values")
                bad = pc.invert(_passes(rule, distinct))
                n_fail = int(pc.sum(pc.filter(vc.field("counts"), bad), min_count=0).as_py() or 0)
                failing = None
                if n_fail and not rule.soft:
                    failing = pc.is_in(column, value_set=pc.filter(distinct, bad))
            else:
                failing = pc.invert(_passes(rule, column))
                n_fail = _count(failing)
            if rule.soft:
                soft.setdefault(col_name, {})[rule.quirk] = n_fail
            elif n_fail:
                message = rule.error or f"must pass {rule.kind} {rule.stats}"
                findings.append(
                    Finding(name, col_name, message, n_fail, _examples(column, failing))
                )
    return findings, soft, counts


def _check_unique(name: str, col_name: str, column: pa.ChunkedArray) -> list[Finding]:
    if _strictly_increasing(column):
        return []  # ids numbered 0..n-1 (Kaggle's test ids): no hashing needed
    valid = len(column) - column.null_count
    dupes = valid - pc.count_distinct(column).as_py()
    if dupes <= 0:
        return []
    vc = _value_counts(column)
    repeated = pc.filter(vc.field("values"), pc.greater(vc.field("counts"), 1))
    failing = pc.is_in(column, value_set=repeated.slice(0, 1))
    n_values = len(repeated)
    counted = (
        f"{dupes} duplicate row{'s' if dupes != 1 else ''}, {n_values} repeated "
        f"value{'s' if n_values != 1 else ''}"
    )
    return [
        Finding(
            name, col_name, "must be unique", dupes, _examples(column, failing), counted=counted
        )
    ]


def _strictly_increasing(column: pa.ChunkedArray) -> bool:
    if not pa.types.is_integer(column.type) or column.null_count or len(column) < 2:
        return False
    values = column.to_numpy()
    return bool(np.all(values[1:] > values[:-1]))


def check_joins(
    tables: dict[str, pa.Table], joins: tuple[Join, ...], min_coverage: float
) -> tuple[list[Finding], dict[str, dict[str, float]]]:
    """Share of rows whose key finds a row in the other table; fail below `min_coverage`."""
    findings = []
    coverage: dict[str, dict[str, float]] = {}
    joins = [
        (j.table, j.column, j.other) for j in joins if j.table in tables and j.other in tables
    ]
    # Look up each distinct key once, and all of a key table's lookups in one go: probing
    # millions of rows into a set of millions of keys is the slow part.
    with ThreadPoolExecutor(max_workers=min(len(joins), os.cpu_count() or 1) or 1) as pool:
        counted = pool.map(lambda j: _value_counts(tables[j[0]][j[1]]), joins)
        distinct = dict(zip(joins, counted, strict=True))
    found: dict[tuple, np.ndarray] = {}
    for other, key in {(j[2], j[1]) for j in joins}:
        mine = [j for j in joins if (j[2], j[1]) == (other, key)]
        values = pa.concat_arrays([distinct[j].field("values") for j in mine])
        hit = pc.is_in(values, value_set=tables[other][key]).to_numpy(zero_copy_only=False)
        for j in mine:
            found[j], hit = hit[: len(distinct[j])], hit[len(distinct[j]) :]
    for join in joins:
        name, col_name, other = join
        column = tables[name][col_name]
        counts = distinct[join].field("counts").to_numpy()
        n = len(column)
        n_joined = int(counts[found[join]].sum())
        share = n_joined / n if n else 1.0
        coverage.setdefault(name, {})[f"{col_name} in {other}"] = round(share, 6)
        if share < min_coverage:
            missing = pc.filter(distinct[join].field("values"), pa.array(~found[join]))
            findings.append(
                Finding(
                    name,
                    col_name,
                    f"must join {other} for at least {min_coverage:.1%} of rows (validate."
                    f"min_join_coverage), only {share:.1%} do",
                    n - n_joined,
                    _examples(column, pc.is_in(column, value_set=missing)),
                )
            )
    return findings, coverage


def check_truth(tables: dict[str, pa.Table], contract: Contract) -> list[Finding]:
    """The truth file (synthetic data) must match the examples row by row."""
    truth, examples = tables.get(contract.truth or ""), tables.get(contract.examples)
    if truth is None or examples is None or truth.num_rows == examples.num_rows:
        return []
    return [
        Finding(
            contract.truth,
            None,
            f"must have one row per {contract.examples} row ({examples.num_rows}), has "
            f"{truth.num_rows}; regenerate both with `make data` or delete it",
            abs(truth.num_rows - examples.num_rows),
        )
    ]


def check_classes(tables: dict[str, pa.Table], contract: Contract) -> list[Finding]:
    """The examples' target must hold both classes: with one, no model can be trained."""
    train = tables.get(contract.examples)
    if train is None or train.num_rows == 0:
        return []
    target = train[contract.target]
    n_per_class = {k: _count(pc.equal(target, k)) for k in (0, 1)}
    absent = [k for k, n in n_per_class.items() if n == 0]
    if len(absent) != 1:
        return []  # both classes present, or neither (the 0-or-1 rule reports that)
    (missing,) = absent
    present = 1 - missing
    n, rows = n_per_class[present], train.num_rows
    where = f"in all {rows} rows" if n == rows else f"in {n} of {rows} rows"
    return [
        Finding(
            contract.examples,
            contract.target,
            f"has only class {present} {where} (no {missing})",
            rows,
            counted="a model needs both; check the export or the ingested chunks",
        )
    ]


# --- profile and drift ------------------------------------------------------------------------


def profile(
    tables: dict[str, pa.Table],
    counts: dict[str, dict[str, pa.StructArray]],
    label: tuple[str, str] | None = None,
) -> dict:
    """Row counts, missing rates, category mixes (share of non-empty rows), and the positive
    rate of `label` (table, target column) when the tables hold it."""
    out: dict[str, Any] = {"tables": {}}
    for name, table in tables.items():
        rows = table.num_rows
        entry: dict[str, Any] = {
            "rows": rows,
            "missing_rate": {
                c: round(table[c].null_count / max(rows, 1), 6) for c in table.column_names
            },
        }
        categories = {}
        for col_name, vc in counts.get(name, {}).items():
            values = vc.field("values").to_pylist()
            n = vc.field("counts").to_pylist()
            total = sum(k for v, k in zip(values, n, strict=True) if v is not None) or 1
            categories[col_name] = {
                category_label(v): round(k / total, 6)
                for v, k in zip(values, n, strict=True)
                if v is not None
            }
        if categories:
            entry["categories"] = categories
        out["tables"][name] = entry
    if label is not None and label[0] in tables:
        target = tables[label[0]][label[1]]
        out["positive_rate"] = round(pc.mean(target).as_py() or 0.0, 6)
    return out


def tvd(mix: dict[str, float], reference: dict[str, float]) -> float:
    """Total variation distance of two category mixes (shares by category)."""
    return 0.5 * sum(abs(mix.get(k, 0.0) - reference.get(k, 0.0)) for k in {*mix, *reference})


def drift(
    current: dict,
    reference: dict,
    settings: Validate,
    known: dict[str, dict[str, tuple]],
    examples: str,
) -> list[dict[str, Any]]:
    """Anomalies of `current` against `reference` (two profiles), each with a message; `known`
    are the contract's category sets by table, `examples` names the labelled table."""
    anomalies = []

    def add(
        table: str,
        column: str | None,
        kind: str,
        value: float,
        limit: float,
        message: str,
        **extra: Any,
    ) -> None:
        anomalies.append(
            {
                "table": table,
                "column": column,
                "kind": kind,
                "value": round(value, 6),
                "threshold": limit,
                "message": message,
                **extra,
            }
        )

    for name, cur in current.get("tables", {}).items():
        ref = reference.get("tables", {}).get(name)
        if ref is None:
            continue
        for col_name, rate in cur["missing_rate"].items():
            ref_rate = ref.get("missing_rate", {}).get(col_name)
            limit = settings.max_missing_rate_change
            if ref_rate is not None and abs(rate - ref_rate) > limit:
                add(
                    name,
                    col_name,
                    "missing_rate",
                    abs(rate - ref_rate),
                    limit,
                    f"{name}: column {col_name!r} is empty in {rate:.1%} of rows, the reference "
                    f"{ref_rate:.1%} (change above {limit:.1%})",
                    current=rate,
                    reference=ref_rate,
                )
        known_values = known.get(name, {})
        for col_name, mix in cur.get("categories", {}).items():
            ref_mix = ref.get("categories", {}).get(col_name)
            if ref_mix is None:
                continue
            distance = tvd(mix, ref_mix)
            if distance > settings.max_category_tvd:
                add(
                    name,
                    col_name,
                    "category_mix",
                    distance,
                    settings.max_category_tvd,
                    f"{name}: column {col_name!r} category mix moved from the reference "
                    f"(total variation distance {distance:.3f} > {settings.max_category_tvd})",
                )
            seen = {*ref_mix, *(category_label(v) for v in known_values.get(col_name, ()))}
            new = {k: v for k, v in mix.items() if k not in seen}
            share = sum(new.values())
            if share > settings.max_new_category_share:
                top = sorted(new, key=lambda k: -new[k])[:EXAMPLES]
                add(
                    name,
                    col_name,
                    "new_category",
                    share,
                    settings.max_new_category_share,
                    f"{name}: column {col_name!r} has categories unknown to the contract and the "
                    f"reference in {share:.1%} of rows (e.g. {top})",
                    values=top,
                )
    if "positive_rate" in current and "positive_rate" in reference:
        rate, ref_rate = current["positive_rate"], reference["positive_rate"]
        limit = settings.max_positive_rate_change
        if abs(rate - ref_rate) > limit:
            add(
                examples,
                "target",
                "positive_rate",
                abs(rate - ref_rate),
                limit,
                f"{examples}: positive rate {rate:.3f}, the reference {ref_rate:.3f} "
                f"(change above {limit})",
                current=rate,
                reference=ref_rate,
            )
    return anomalies


# --- everything together ----------------------------------------------------------------------


def known_categories(contract: Contract) -> dict[str, dict[str, tuple]]:
    """The contract's category sets, by table and column."""
    return {name: table.categorical for name, table in contract.tables.items()}


def validate(
    tables: dict[str, pa.Table],
    contract: Contract,
    settings: Validate,
    reference: dict | None,
    timer: Callable[[str], None] | None = None,
) -> Outcome:
    """Contract, coverage and truth checks on every table, the profile, and drift vs reference."""
    tick = timer or (lambda _label: None)
    errors: list[Finding] = []
    quirks: dict[str, dict] = {}
    counts: dict[str, dict[str, pa.StructArray]] = {}
    n_rules = 0
    # Each compute kernel runs on one core (and releases the GIL): check tables side by side.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        joins = pool.submit(check_joins, tables, contract.joins, settings.min_join_coverage)
        checked = {
            name: pool.submit(check_table, name, table, contract.tables[name])
            for name, table in tables.items()
        }
        for name, future in checked.items():
            found, soft, counts[name] = future.result()
            errors.extend(found)
            if soft:
                quirks[name] = soft
            n_rules += sum(2 + len(c.checks()) for c in contract.tables[name].columns.values())
        tick("contract checks")
        join_errors, coverage = joins.result()
    errors.extend(join_errors)
    errors.extend(check_truth(tables, contract))
    errors.extend(check_classes(tables, contract))
    tick("coverage")
    current = profile(tables, counts, (contract.examples, contract.target))
    anomalies = []
    if reference is not None:
        known = known_categories(contract)
        anomalies = drift(current, reference, settings, known, contract.examples)
    tick("profile and drift")
    report = {
        **current,
        "has_truth": contract.truth in tables,
        "checks": {"rules": n_rules, "failed": len(errors)},
        "quirks": quirks,
        "coverage": coverage,
        "drift": {
            "severity": settings.drift_severity,
            "thresholds": settings.thresholds(),
            "compared": reference is not None,
            "anomalies": anomalies,
        },
        "status": "failed" if errors else ("drift" if anomalies else "ok"),
    }
    return Outcome(errors=errors, anomalies=anomalies, report=report, profile=current)


# --- the verdict ------------------------------------------------------------------------------


def fail_on_errors(errors: list[Finding], data: Path) -> None:
    """Raise one UserError: the first violation on the first line, all of them below."""
    if not errors:
        return
    lines = [e.describe(data) for e in errors]
    more = f" (+{len(lines) - 1} more problem(s), listed below)" if len(lines) > 1 else ""
    raise UserError("\n".join([lines[0] + more, *lines[1:]]))


def handle_drift(anomalies: list[dict], settings: Validate, reference: Path) -> None:
    """Log every anomaly; with drift_severity: fail, raise on the first."""
    for anomaly in anomalies:
        log.warning("drift: %s", anomaly["message"])
    if anomalies and settings.drift_severity == "fail":
        n_more = len(anomalies) - 1
        more = f" (+{n_more} more anomal{'y' if n_more == 1 else 'ies'})" if n_more else ""
        raise UserError(
            f"data drift against {reference}: {anomalies[0]['message']}{more}\n"
            "if the change is expected, refresh the reference (`make reference`) or set "
            "validate.drift_severity: warn in params.yaml"
        )


def judge(outcome: Outcome, settings: Validate, data: Path, reference: Path) -> None:
    """Raise one UserError when the data must be rejected: a hard violation, or drift with
    validate.drift_severity: fail (drift is logged either way)."""
    fail_on_errors(outcome.errors, data)
    handle_drift(outcome.anomalies, settings, reference)


def load_reference(path: Path) -> dict:
    """The committed reference profile, with errors that say how to make one."""
    if not path.exists():
        raise UserError(f"{path}: reference profile not found; make it with `make reference`")
    try:
        reference = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(
            f"{path}: not valid JSON ({err}); remake it with `make reference`"
        ) from None
    if not isinstance(reference, dict) or not isinstance(reference.get("tables"), dict):
        raise UserError(f"{path}: not a profile (no 'tables'); remake it with `make reference`")
    return reference


def failure_report(partial: dict[str, Any], err: UserError) -> dict[str, Any]:
    """The report of a rejected data set: what was measured before it failed, and why."""
    return {**partial, "status": "failed", "errors": str(err).splitlines()}
