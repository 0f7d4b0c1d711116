"""Stage preprocess: the problem's featurizer, fitted on the train part, and the model features
of every part (train out-of-fold, valid and eval from the rows before them), written with the
fitted featurizer, which the release bundle scores raw rows with.

It runs on the engine the environment chooses (cd4ml.engine): in this process, or on a Dask
cluster (the problem's plan of mergeable passes), with the same features either way."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from cd4ml import engine, params
from cd4ml.io import lean_memory_pool, run_main

log = logging.getLogger("preprocess")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True, help="folder of the raw CSVs")
    parser.add_argument("--split", type=Path, required=True, help="train / valid / eval parts")
    parser.add_argument("--out", type=Path, required=True, help="folder for the features")
    parser.add_argument("--params", default="params.yaml")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    lean_memory_pool()
    problem = params.problem(args.params)
    settings = params.problem_section(problem, "preprocess", args.params)
    log.info("%s engine", engine.name())
    engine.featurize(problem, args.data, args.split, settings, args.out)
    log.info("wrote the features and the featurizer to %s", args.out)


if __name__ == "__main__":
    run_main(main)
