"""Stage validate: read every raw table with explicit dtypes, check it, write it as Parquet."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from kkbox import schema
from kkbox.io import UserError, atomic_dir, run_main, write_json, write_parquet
from kkbox.raw import read_table

log = logging.getLogger("validate")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True, help="folder of the raw CSVs")
    parser.add_argument("--out", type=Path, required=True, help="folder for the Parquet tables")
    parser.add_argument("--report", type=Path, required=True, help="JSON validation report")
    return parser.parse_args(argv)


def check_tables(tables: dict[str, pa.Table], data: Path) -> None:
    """Hard rules: binary target, unique keys, a truth file that matches train.csv row by row."""
    target = tables[schema.TRAIN]["target"]
    bad = pc.invert(pc.is_in(target, pa.array([0, 1], pa.int8())))
    if (n_bad := pc.sum(pc.fill_null(bad, True)).as_py()) > 0:
        first = pc.index(pc.fill_null(bad, True), True).as_py() + 1
        raise UserError(
            f"{data / schema.TRAIN}: column 'target' must be 0 or 1; {n_bad} row(s) are not "
            f"(first at row {first})"
        )
    for name, key in ((schema.MEMBERS, "msno"), (schema.SONGS, "song_id"), (schema.TEST, "id")):
        column = tables[name][key]
        if (dupes := len(column) - pc.count_distinct(column).as_py()) > 0:
            raise UserError(f"{data / name}: column {key!r} must be unique; {dupes} duplicate(s)")
    truth = tables.get(schema.TRUTH)
    if truth is not None and truth.num_rows != tables[schema.TRAIN].num_rows:
        raise UserError(
            f"{data / schema.TRUTH}: {truth.num_rows} rows but train.csv has "
            f"{tables[schema.TRAIN].num_rows}; regenerate both with `make data` or delete it"
        )


def profile(tables: dict[str, pa.Table]) -> dict:
    """Row counts, missing rates and the positive rate: what the report shows."""
    report: dict = {"tables": {}}
    for name, table in tables.items():
        report["tables"][name] = {
            "rows": table.num_rows,
            "missing_rate": {
                col: round(table[col].null_count / max(table.num_rows, 1), 6)
                for col in table.column_names
            },
        }
    report["positive_rate"] = round(pc.mean(tables[schema.TRAIN]["target"]).as_py(), 6)
    report["has_truth"] = schema.TRUTH in tables
    return report


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    names = list(schema.REQUIRED) + [n for n in schema.OPTIONAL if (args.data / n).exists()]
    tables = {name: read_table(args.data / name, name) for name in names}
    check_tables(tables, args.data)
    report = profile(tables)
    with atomic_dir(args.out) as tmp:
        for name, table in tables.items():
            write_parquet(table, tmp / name.replace(".csv", ".parquet"))
    write_json(report, args.report)
    log.info("validated %d tables into %s", len(tables), args.out)


if __name__ == "__main__":
    run_main(main)
