"""Stage split: carve the evaluation set from train.csv by time (its last rows)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pyarrow as pa

from kkbox import params, schema
from kkbox.io import PLAYS_PARQUET, UserError, lean_memory_pool, parquet_folder, run_main
from kkbox.raw import read_table

log = logging.getLogger("split")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True, help="folder of the raw CSVs")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--params", default="params.yaml")
    return parser.parse_args(argv)


def split_point(n_rows: int, eval_fraction: float) -> int:
    """Index of the first evaluation row: train.csv is in time order, the tail is the future."""
    cut = n_rows - round(n_rows * eval_fraction)
    if cut < 1 or cut >= n_rows:
        raise UserError(
            f"split.eval_fraction={eval_fraction} leaves an empty part of {n_rows} train rows"
        )
    return cut


def split(train: pa.Table, truth: pa.ChunkedArray, eval_fraction: float) -> dict:
    """The training part, the eval part (the last rows) and the eval rows' true probability
    (null where unknown), by output file name."""
    cut = split_point(train.num_rows, eval_fraction)
    # The truth is kept apart from the features so that no stage can train on it.
    return {
        "train.parquet": train.slice(0, cut),
        "eval.parquet": train.slice(cut),
        "eval_truth.parquet": pa.table({"target_probability": truth.slice(cut)}),
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    lean_memory_pool()
    fraction = params.load(args.params).split.eval_fraction
    train = read_table(args.data / schema.TRAIN, schema.TRAIN)
    truth_path = args.data / schema.TRUTH
    if truth_path.exists():
        truth = read_table(truth_path, schema.TRUTH)["target_probability"]
    else:
        # Real Kaggle data has no truth: an all-empty column keeps the outputs the same.
        truth = pa.chunked_array([pa.nulls(train.num_rows, pa.float64())])
    parts = split(train, truth, fraction)
    # The three files are written at once (Parquet encoding releases the GIL). zstd with the
    # ids dictionary-encoded: measured at full scale on the train part against lz4 with msno
    # alone encoded, 85 MB instead of 273 MB, written as fast (1.6 s) and read back in half the
    # time; preprocess then joins members and songs on the dictionaries.
    with parquet_folder(args.out, workers=len(parts)) as out:
        for name, table in parts.items():
            out.write(table, name, "zstd", **PLAYS_PARQUET)
    log.info(
        "split %d rows: %d train, %d eval (last %.0f%%)",
        train.num_rows,
        parts["train.parquet"].num_rows,
        parts["eval.parquet"].num_rows,
        100 * fraction,
    )


if __name__ == "__main__":
    run_main(main)
