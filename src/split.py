"""Stage split: the labelled examples cut by time into the train, valid (early-stopping) and
eval parts (cd4ml.split), and the eval rows' true probability where the data has one."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pyarrow as pa

from cd4ml import params
from cd4ml.io import REPEATED_IDS_PARQUET, lean_memory_pool, parquet_folder, run_main
from cd4ml.reading import read_table
from cd4ml.split import Split, split

log = logging.getLogger("split")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True, help="folder of the raw CSVs")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--params", default="params.yaml")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    lean_memory_pool()
    contract = params.problem(args.params).contract
    settings = params.section(args.params, "split", Split)
    name = contract.examples
    examples = read_table(args.data / name, contract.tables[name])
    truth_path = args.data / contract.truth if contract.truth else None
    if truth_path is not None and truth_path.exists():
        truth = read_table(truth_path, contract.tables[contract.truth]).column(0)
    else:
        # Real data has no truth: an all-empty column keeps the outputs the same.
        truth = pa.chunked_array([pa.nulls(examples.num_rows, pa.float64())])
    parts = split(examples, truth, settings)
    # The files are written at once (Parquet encoding releases the GIL). zstd with the ids
    # dictionary-encoded: measured at full scale on KKBox's train part against lz4 with one id
    # encoded, 85 MB instead of 273 MB, written as fast (1.6 s) and read back in half the time.
    with parquet_folder(args.out, workers=len(parts)) as out:
        for part, table in parts.items():
            out.write(table, f"{part}.parquet", "zstd", **REPEATED_IDS_PARQUET)
    log.info(
        "split %d rows: %d train, %d valid (early stopping), %d eval",
        examples.num_rows,
        *(parts[p].num_rows for p in ("train", "valid", "eval")),
    )


if __name__ == "__main__":
    run_main(main)
