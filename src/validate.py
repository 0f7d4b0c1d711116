"""Stage validate: read every raw table of the problem's contract with its dtypes and check it;
write the report.

The checks are the contract (cd4ml.contract: types, nullability, keys, rules), referential
coverage and drift against the committed reference profile (cd4ml.validation). Hard violations
and, with validate.drift_severity: fail, drift anomalies fail the stage, and the stages after it
do not run. It writes no copy of the tables: the stages after it read the CSVs with the same
reader, which costs less than storing a second copy of the data in every version.
`--update-reference` writes the profile of the data as the new reference instead.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

from cd4ml import params, validation
from cd4ml.io import UserError, lean_memory_pool, run_main, write_json
from cd4ml.reading import read_tables

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


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    lean_memory_pool()
    contract = params.problem(args.params).contract
    settings = params.section(args.params, "validate", validation.Validate)
    if args.update_reference:
        outcome = validation.validate(read_tables(args.data, contract), contract, settings, None)
        validation.fail_on_errors(outcome.errors, args.data)
        write_json({"about": ABOUT, **outcome.profile}, args.reference)
        log.info("wrote the reference profile %s", args.reference)
        return
    started = time.perf_counter()

    def timer(step: str) -> None:
        log.info("%s done at %.2f s", step, time.perf_counter() - started)

    report: dict[str, Any] = {}
    try:
        reference = validation.load_reference(args.reference)
        tables = read_tables(args.data, contract)
        timer(f"read {len(tables)} tables")
        outcome = validation.validate(tables, contract, settings, reference, timer)
        report.update(outcome.report)  # written on a rejection too: most useful exactly then
        validation.judge(outcome, settings, args.data, args.reference)
    except UserError as err:
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
