"""Stage predict: score Kaggle's test.csv through the release bundle into a submission file
(id, target probability): raw rows in, so every submission proves the released artifact works."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from kkbox import bundle, schema
from kkbox.io import run_main, write_csv
from kkbox.raw import read_table

log = logging.getLogger("predict")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bundle", type=Path, required=True, help="the release bundle folder")
    parser.add_argument("--test", type=Path, required=True, help="Kaggle's test.csv")
    parser.add_argument("--out", type=Path, required=True, help="submission CSV")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    scorer = bundle.load(args.bundle)
    rows = read_table(args.test, schema.TEST, ["id", *bundle.INPUT])
    p = scorer.predict_proba(rows)
    written = write_csv({"id": rows["id"], "target": np.round(p, 6)}, args.out)
    log.info("wrote %s: %d predictions, mean %.4f", args.out, written, float(p.mean()))


if __name__ == "__main__":
    run_main(main)
