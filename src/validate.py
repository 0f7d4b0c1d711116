"""Stage validate: read every raw table with explicit dtypes, check it, write it as Parquet.

The checks are the declared schema (kkbox.schema), referential coverage and drift against the
committed reference profile (kkbox.validation). Hard violations and, with
validate.drift_severity: fail, drift anomalies stop the stage before anything is written.
`--update-reference` writes the profile of the data as the new reference instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa

from kkbox import params, schema, validation
from kkbox.io import UserError, atomic_dir, run_main, write_json, write_parquet
from kkbox.raw import read_table

log = logging.getLogger("validate")

ABOUT = (
    "Reference profile of the raw tables for the drift check of stage validate "
    "(src/validate.py); refresh it with `make reference` and commit it."
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True, help="folder of the raw CSVs")
    parser.add_argument("--out", type=Path, help="folder for the Parquet tables")
    parser.add_argument("--report", type=Path, help="JSON validation report")
    parser.add_argument(
        "--reference",
        type=Path,
        required=True,
        help="reference profile (JSON, in git) for the drift check",
    )
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument(
        "--update-reference",
        action="store_true",
        help="write the data's profile to --reference; no Parquet, no report",
    )
    args = parser.parse_args(argv)
    if not args.update_reference and (args.out is None or args.report is None):
        parser.error("--out and --report are required (unless --update-reference)")
    return args


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


def fail_on_errors(errors: list[validation.Finding], data: Path) -> None:
    """Raise one UserError: the first violation on the first line, all of them below."""
    if not errors:
        return
    lines = [e.describe(data) for e in errors]
    more = f" (+{len(lines) - 1} more problem(s), listed below)" if len(lines) > 1 else ""
    raise UserError("\n".join([lines[0] + more, *lines[1:]]))


def handle_drift(anomalies: list[dict], settings: params.Validate, reference: Path) -> None:
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


def read_tables(data: Path) -> dict[str, pa.Table]:
    """Every raw table of the folder, the optional truth file where it exists."""
    names = list(schema.REQUIRED) + [n for n in schema.OPTIONAL if (data / n).exists()]
    return {name: read_table(data / name, name) for name in names}


def failure_report(partial: dict[str, Any], err: UserError) -> dict[str, Any]:
    """The report of a rejected data set: what was measured before it failed, and why."""
    return {**partial, "status": "failed", "errors": str(err).splitlines()}


def validate_into(
    out: Path,
    tables: dict[str, pa.Table],
    settings: params.Validate,
    reference: dict,
    judge: Callable[[validation.Outcome], None],
    report: dict[str, Any],
    timer: Callable[[str], None],
) -> validation.Outcome:
    """Check the tables and write them as Parquet into `out`, all or nothing (`judge` raises
    to reject). `report` is filled as soon as the checks have run, so a rejection has one."""
    with atomic_dir(out) as tmp:
        # Parquet encoding is single-threaded per file: write the tables side by side, and
        # while the checks run. A failed check discards the temp folder (nothing is swapped in).
        pool = ThreadPoolExecutor(max_workers=min(len(tables), os.cpu_count() or 1))
        try:
            by_size = sorted(tables.items(), key=lambda kv: -kv[1].nbytes)
            writes = [
                pool.submit(write_parquet, table, tmp / name.replace(".csv", ".parquet"))
                for name, table in by_size
            ]
            outcome = validation.validate(tables, settings, reference, timer=timer)
            report.update(outcome.report)
            judge(outcome)
            for write in writes:
                write.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    return outcome


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    settings = params.load(args.params).validate
    started = time.perf_counter()

    def timer(step: str) -> None:
        log.info("%s done at %.2f s", step, time.perf_counter() - started)

    if args.update_reference:
        outcome = validation.validate(read_tables(args.data), settings, None, timer=timer)
        fail_on_errors(outcome.errors, args.data)
        write_json({"about": ABOUT, **outcome.profile}, args.reference)
        log.info("wrote the reference profile %s", args.reference)
        return

    report: dict[str, Any] = {}
    try:
        reference = load_reference(args.reference)
        tables = read_tables(args.data)
        log.info("read %d tables in %.2f s", len(tables), time.perf_counter() - started)

        def judge(outcome: validation.Outcome) -> None:
            fail_on_errors(outcome.errors, args.data)
            handle_drift(outcome.anomalies, settings, args.reference)

        outcome = validate_into(args.out, tables, settings, reference, judge, report, timer)
    except UserError as err:
        # Written on failure too: the report is most useful exactly then.
        write_json(failure_report(report, err), args.report)
        raise
    write_json({**outcome.report, "errors": []}, args.report)
    log.info(
        "validated %d tables into %s in %.2f s (%s, %d drift anomalies)",
        len(tables),
        args.out,
        time.perf_counter() - started,
        outcome.report["status"],
        len(outcome.anomalies),
    )


if __name__ == "__main__":
    run_main(main)
