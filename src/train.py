"""Stage train: fit the model chosen in params.yaml on the training features."""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import platform
import time
from dataclasses import asdict
from pathlib import Path

import yaml

from kkbox import model, params
from kkbox.features import FEATURES
from kkbox.io import read_parquet, run_main, write_json

log = logging.getLogger("train")

LIBRARIES = ("xgboost", "scikit-learn", "pandas", "pyarrow", "numpy", "dvc")


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


def data_version(path: Path) -> str | None:
    """The md5 DVC recorded for data/, or None when data/ is not tracked."""
    if not path.exists():
        return None
    with path.open(encoding="utf-8") as fh:
        outs = (yaml.safe_load(fh) or {}).get("outs") or [{}]
    return outs[0].get("md5")


def _version(library: str) -> str | None:
    """The installed version of a library, None where it is not installed (dvc on a GPU box)."""
    try:
        return importlib.metadata.version(library)
    except importlib.metadata.PackageNotFoundError:
        return None


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    settings = params.load(args.params).train
    estimator = model.build(settings)
    frame = read_parquet(args.features / "train.parquet").to_pandas()
    x, y = frame[FEATURES], frame["target"].to_numpy()
    log.info("training %s on %d rows x %d features", settings.model, len(x), len(FEATURES))
    started = time.perf_counter()
    info = model.fit(estimator, x, y, settings.valid_fraction)
    seconds = time.perf_counter() - started
    log.info("trained in %.1f s %s", seconds, info)
    model.save(estimator, args.out / "model.joblib")
    write_json(
        {
            "model": settings.model,
            "params": asdict(settings),
            "features": FEATURES,
            "n_train_rows": len(x),
            "fit": info,
            "data_version": data_version(args.data_version),
            "libraries": {lib: _version(lib) for lib in LIBRARIES},
            "python": platform.python_version(),
        },
        args.out / "model.json",
    )


if __name__ == "__main__":
    run_main(main)
