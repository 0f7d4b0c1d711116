"""Stage predict: score the problem's batch table (KKBox: Kaggle's test.csv) through the release
bundle into a submission file (id, target probability): raw rows in, so every submission proves
the released artifact works."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from cd4ml import bundle, params
from cd4ml.io import UserError, run_main, write_csv
from cd4ml.reading import read_table

log = logging.getLogger("predict")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bundle", type=Path, required=True, help="the release bundle folder")
    parser.add_argument("--data", type=Path, required=True, help="folder of the raw CSVs")
    parser.add_argument("--out", type=Path, required=True, help="submission CSV")
    parser.add_argument("--params", default="params.yaml")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    problem = params.problem(args.params)
    contract = problem.contract
    if contract.batch is None or contract.id is None:
        raise UserError(
            f"problem {problem.name} declares no batch table to score (Contract.batch)"
        )
    scorer = bundle.load(args.bundle, problem)
    names = [f.name for f in scorer.fields]
    rows = read_table(
        args.data / contract.batch, contract.tables[contract.batch], [contract.id, *names]
    )
    p = scorer.predict_proba(rows)
    written = write_csv({contract.id: rows[contract.id], "target": np.round(p, 6)}, args.out)
    log.info("wrote %s: %d predictions, mean %.4f", args.out, written, float(p.mean()))


if __name__ == "__main__":
    run_main(main)
