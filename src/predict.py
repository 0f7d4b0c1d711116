"""Stage predict: score Kaggle's test.csv into a submission file (id, target probability)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from kkbox import model
from kkbox.features import FEATURES
from kkbox.io import read_parquet, run_main, write_csv

log = logging.getLogger("predict")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--features", type=Path, required=True, help="holds test.parquet")
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="submission CSV")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    estimator = model.load(args.model)
    frame = read_parquet(args.features / "test.parquet").to_pandas()
    p = model.predict_proba(estimator, frame[FEATURES])
    rows = write_csv({"id": frame["id"].to_numpy(), "target": np.round(p, 6)}, args.out)
    log.info("wrote %s: %d predictions, mean %.4f", args.out, rows, float(p.mean()))


if __name__ == "__main__":
    run_main(main)
