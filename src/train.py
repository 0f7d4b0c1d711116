"""Stage train: fit a model of the kind params.yaml chooses (train.model, one of the problem's
kinds) on the train features, stopping early on the valid ones; save it in the kind's own format
with model.json, what made it."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import pyarrow.parquet as pq

from cd4ml import engine, model, params, provenance
from cd4ml.io import run_main

log = logging.getLogger("train")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--features", type=Path, required=True)
    parser.add_argument(
        "--data-version",
        type=Path,
        default=Path("data.dvc"),
        help="the .dvc file of data/: its hash names the data version",
    )
    parser.add_argument("--out", type=Path, required=True, help="the model folder")
    parser.add_argument("--params", default="params.yaml")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    problem = params.problem(args.params)
    settings = params.section(args.params, "train", model.train_settings(problem.kinds))
    built = model.build(problem.kinds, settings)
    names = [c for c in pq.read_schema(args.features / "train.parquet").names if c != model.TARGET]
    where = engine.name()
    log.info("training %s on %d features, %s engine", settings.model, len(names), where)
    started = time.perf_counter()
    info, n_train, n_valid = engine.fit(problem, built, args.features)
    log.info("trained in %.1f s %s", time.perf_counter() - started, info)
    version = args.data_version.read_text(encoding="utf-8") if args.data_version.exists() else ""
    model.save(
        args.out,
        built,
        {
            "params": {"seed": settings.seed, **getattr(settings, settings.model).model_dump()},
            "features": names,
            "n_train_rows": n_train,
            "n_valid_rows": n_valid,
            "fit": info,
            "engine": where,
            "data_version": provenance.data_version(version),
            "libraries": provenance.library_versions(),
            "python": provenance.python_version(),
        },
    )


if __name__ == "__main__":
    run_main(main)
