"""Stage validate: read every raw table with explicit dtypes and check it; write the report.

The checks are the declared schema (kkbox.schema), referential coverage and drift against the
committed reference profile (kkbox.validation). Hard violations and, with
validate.drift_severity: fail, drift anomalies fail the stage, and the stages after it do not
run. It writes no copy of the tables: the stages after it read the CSVs with the same reader
(kkbox.raw), which costs less than storing a second copy of the data in every version.
`--update-reference` writes the profile of the data as the new reference instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

from kkbox import params, schema, validation
from kkbox.io import UserError, lean_memory_pool, run_main, write_json
from kkbox.raw import read_table

log = logging.getLogger("validate")

ABOUT = (
    "Reference profile of the raw tables for the drift check of stage validate "
    "(src/validate.py); refresh it with `make reference` and commit it."
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True, help="folder of the raw CSVs")
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
        help="write the data's profile to --reference; no report",
    )
    args = parser.parse_args(argv)
    if not args.update_reference and args.report is None:
        parser.error("--report is required (unless --update-reference)")
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


def read_tables(data: Path) -> dict[str, pa.Table]:
    """Every raw table of the folder, the optional truth file where it exists; the plays' text
    columns dictionary-encoded (a third of the memory: the checks hold every table at once)."""
    names = list(schema.REQUIRED) + [n for n in schema.OPTIONAL if (data / n).exists()]
    plays = (schema.TRAIN, schema.TEST)
    return {name: read_table(data / name, name, dictionary=name in plays) for name in names}


def check(
    tables: dict[str, pa.Table],
    settings: params.Validate,
    reference: dict,
    where: tuple[Path, Path],
    report: dict[str, Any],
) -> validation.Outcome:
    """Check the tables (read from `where` = (data folder, reference file)); raise when they
    must be rejected. `report` is filled as soon as the checks have run, so that a rejection
    has one too."""
    started = time.perf_counter()

    def timer(step: str) -> None:
        log.info("%s done at %.2f s", step, time.perf_counter() - started)

    outcome = validation.validate(tables, settings, reference, timer=timer)
    report.update(outcome.report)
    validation.judge(outcome, settings, *where)
    return outcome


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    lean_memory_pool()
    settings = params.load(args.params).validate
    if args.update_reference:
        outcome = validation.validate(read_tables(args.data), settings, None)
        validation.fail_on_errors(outcome.errors, args.data)
        write_json({"about": ABOUT, **outcome.profile}, args.reference)
        log.info("wrote the reference profile %s", args.reference)
        return
    started = time.perf_counter()
    report: dict[str, Any] = {}
    try:
        reference = load_reference(args.reference)
        tables = read_tables(args.data)
        log.info("read %d tables in %.2f s", len(tables), time.perf_counter() - started)
        where = (args.data, args.reference)
        outcome = check(tables, settings, reference, where, report)
    except UserError as err:
        # Written on failure too: the report is most useful exactly then.
        write_json(validation.failure_report(report, err), args.report)
        raise
    write_json({**outcome.report, "errors": []}, args.report)
    log.info(
        "validated %d tables in %.2f s (%s, %d drift anomalies)",
        len(tables),
        time.perf_counter() - started,
        outcome.report["status"],
        len(outcome.anomalies),
    )


if __name__ == "__main__":
    run_main(main)
