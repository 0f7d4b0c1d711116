"""Stage split: carve the evaluation set from train.csv by time (its last rows)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pyarrow as pa

from kkbox import params
from kkbox.io import UserError, lean_memory_pool, parquet_folder, read_parquet, run_main
from kkbox.schema import SOURCE_COLUMNS

log = logging.getLogger("split")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--validated", type=Path, required=True)
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
    # The play-context columns have a few dozen values: read (and written back) as
    # dictionaries, they are never expanded to strings.
    train = read_parquet(args.validated / "train.parquet", read_dictionary=list(SOURCE_COLUMNS))
    truth = read_parquet(args.validated / "train_truth.parquet")["target_probability"]
    parts = split(train, truth, fraction)
    # The three files are written at once (Parquet encoding releases the GIL); lz4 is the
    # fastest codec to write and to read back. Dictionary encoding where values repeat: msno
    # (34k members, a dictionary of 1.5 MB, hence the larger page limit) halves the file and
    # lets preprocess join members on the dictionary; the 2.3M song ids would only cost time.
    options = {
        "use_dictionary": ["msno", *SOURCE_COLUMNS, "target"],
        "dictionary_pagesize_limit": 8 << 20,
    }
    with parquet_folder(args.out, workers=len(parts)) as out:
        for name, table in parts.items():
            out.write(table, name, "lz4", **options)
    log.info(
        "split %d rows: %d train, %d eval (last %.0f%%)",
        train.num_rows,
        parts["train.parquet"].num_rows,
        parts["eval.parquet"].num_rows,
        100 * fraction,
    )


if __name__ == "__main__":
    run_main(main)
