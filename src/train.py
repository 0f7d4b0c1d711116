"""Stage train: fit the model chosen in params.yaml on the training features."""

from __future__ import annotations

import argparse
import functools
import logging
import time
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from kkbox import cluster, model, params, provenance
from kkbox.features import FEATURES
from kkbox.io import read_parquet, run_main, write_json

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
    parser.add_argument("--out", type=Path, required=True, help="folder for the model files")
    parser.add_argument("--params", default="params.yaml")
    return parser.parse_args(argv)


def _data_version(path: Path) -> str | None:
    """The md5 DVC recorded for data/, or None when data/ is not tracked."""
    return provenance.data_version(path.read_text(encoding="utf-8")) if path.exists() else None


def _fit_local(estimator: object, features: Path) -> tuple[dict, int, int]:
    frame = read_parquet(features / "train.parquet").to_pandas()
    valid = read_parquet(features / "valid.parquet").to_pandas()
    log.info("%d training rows, %d early-stopping rows", len(frame), len(valid))
    x, y = frame[FEATURES], frame["target"].to_numpy()
    info = model.fit(estimator, x, y, (valid[FEATURES], valid["target"].to_numpy()))
    return info, len(frame), len(valid)


def _fit_on_cluster(estimator: object, features: Path) -> tuple[dict, int, int]:
    """xgboost.dask on the cluster: the workers read the features from the scratch space."""
    with cluster.connect() as (client, space):
        workers = len(client.scheduler_info()["workers"])
        read = functools.partial(_on_worker_read, options=space.options)
        frames = []
        urls = space.stage(*(features / f"{part}.parquet" for part in ("train", "valid")))
        for part, url in zip(("train", "valid"), urls, strict=True):
            frame, cuts = cluster.frame(space, url, 2 * workers, read)
            frames.append(frame)
            log.info("%s: %d rows in %d partitions", part, cuts[-1].stop, len(cuts))
        train, valid = (client.persist(f) for f in frames)
        info = model.fit_on_cluster(
            estimator,
            client,
            train[FEATURES],
            train["target"],
            (valid[FEATURES], valid["target"]),
        )
        return info, len(train), len(valid)


def _on_worker_read(piece: cluster.Piece, options: dict) -> pd.DataFrame:
    return cluster.read_piece(piece, options, [*FEATURES, "target"]).to_pandas()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    config = params.load(args.params)
    settings = config.train
    estimator = model.build(settings)
    log.info("training %s on %d features, %s engine", settings.model, len(FEATURES), config.engine)
    started = time.perf_counter()
    fit = _fit_on_cluster if config.engine == "dask" else _fit_local
    info, n_train, n_valid = fit(estimator, args.features)
    seconds = time.perf_counter() - started
    log.info("trained in %.1f s %s", seconds, info)
    model.save(estimator, args.out / "model.joblib")
    write_json(
        {
            "model": settings.model,
            "params": asdict(settings),
            "features": FEATURES,
            "n_train_rows": n_train,
            "n_valid_rows": n_valid,
            "fit": info,
            "data_version": _data_version(args.data_version),
            "libraries": provenance.library_versions(),
            "python": provenance.python_version(),
        },
        args.out / "model.json",
    )


if __name__ == "__main__":
    run_main(main)
