"""Stage split: carve the evaluation set from train.csv by time (its last rows)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pyarrow as pa

from kkbox.io import UserError, atomic_dir, load_params, read_parquet, require, run_main
from kkbox.io import write_parquet

log = logging.getLogger("split")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--validated", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--params", default="params.yaml")
    return parser.parse_args(argv)


def split_point(n_rows: int, eval_fraction: float) -> int:
    """Index of the first evaluation row: train.csv is in time order, the tail is the future."""
    if not 0.0 < eval_fraction < 1.0:
        raise UserError(f"params.yaml: split.eval_fraction must be in (0, 1), got {eval_fraction}")
    cut = n_rows - round(n_rows * eval_fraction)
    if cut < 1 or cut >= n_rows:
        raise UserError(
            f"split.eval_fraction={eval_fraction} leaves an empty part of {n_rows} train rows"
        )
    return cut


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    params = load_params(args.params, "split")
    fraction = require(params, "eval_fraction", (float, int), "split")
    train = read_parquet(args.validated / "train.parquet")
    cut = split_point(train.num_rows, float(fraction))
    truth_path = args.validated / "train_truth.parquet"
    if truth_path.exists():
        truth = read_parquet(truth_path)["target_probability"]
    else:
        truth = pa.nulls(train.num_rows, pa.float64())
    with atomic_dir(args.out) as tmp:
        write_parquet(train.slice(0, cut), tmp / "train.parquet")
        write_parquet(train.slice(cut), tmp / "eval.parquet")
        # Kept apart from the features so that no stage can train on it.
        truth_table = pa.table({"target_probability": truth.slice(cut)})
        write_parquet(truth_table, tmp / "eval_truth.parquet")
    log.info("split %d rows: %d train, %d eval (last %.0f%%)",
             train.num_rows, cut, train.num_rows - cut, 100 * fraction)


if __name__ == "__main__":
    run_main(main)
