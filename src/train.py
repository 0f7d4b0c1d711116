"""Stage train: fit the model chosen in params.yaml on the training features."""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import asdict
from pathlib import Path

from kkbox import model, params, provenance
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


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    settings = params.load(args.params).train
    estimator = model.build(settings)
    frame = read_parquet(args.features / "train.parquet").to_pandas()
    valid = read_parquet(args.features / "valid.parquet").to_pandas()
    x, y = frame[FEATURES], frame["target"].to_numpy()
    log.info(
        "training %s on %d rows x %d features, %d early-stopping rows",
        settings.model,
        len(x),
        len(FEATURES),
        len(valid),
    )
    started = time.perf_counter()
    info = model.fit(estimator, x, y, (valid[FEATURES], valid["target"].to_numpy()))
    seconds = time.perf_counter() - started
    log.info("trained in %.1f s %s", seconds, info)
    model.save(estimator, args.out / "model.joblib")
    write_json(
        {
            "model": settings.model,
            "params": asdict(settings),
            "features": FEATURES,
            "n_train_rows": len(x),
            "n_valid_rows": len(valid),
            "fit": info,
            "data_version": _data_version(args.data_version),
            "libraries": provenance.library_versions(),
            "python": provenance.python_version(),
        },
        args.out / "model.json",
    )


if __name__ == "__main__":
    run_main(main)
