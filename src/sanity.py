"""Stage sanity: check the model's predictions and its stability before anything is released.

Checks: valid probabilities, one prediction per eval row, non-constant predictions, predicted
positive rate close to the training one, and a cross-validation whose folds agree. The report
is written even when a check fails; the stage then exits non-zero so that `dvc repro` stops.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kkbox import model, sanity
from kkbox.features import FEATURES
from kkbox.io import UserError, load_params, read_parquet, require, run_main, write_json

log = logging.getLogger("sanity")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--features", type=Path, required=True, help="train and eval features")
    parser.add_argument("--split", type=Path, required=True, help="holds eval.parquet (row count)")
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--report", type=Path, required=True, help="sanity report (JSON)")
    parser.add_argument("--params", default="params.yaml")
    return parser.parse_args(argv)


def _settings(path: str) -> dict[str, Any]:
    params = load_params(path, "sanity")
    settings = {
        "tolerance": float(require(params, "positive_rate_tolerance", (int, float), "sanity")),
        "folds": require(params, "cv_folds", int, "sanity"),
        "max_deviation": float(require(params, "cv_max_deviation", (int, float), "sanity")),
        "max_rows": require(params, "cv_max_rows", int, "sanity"),
        "seed": require(params, "seed", int, "sanity"),
    }
    if settings["tolerance"] < 0 or settings["max_deviation"] < 0:
        raise UserError(
            "params.yaml: sanity.positive_rate_tolerance and sanity.cv_max_deviation must be >= 0"
        )
    if settings["folds"] < 2:
        raise UserError(f"params.yaml: sanity.cv_folds must be >= 2, got {settings['folds']}")
    if settings["max_rows"] < 10 * settings["folds"]:
        raise UserError(
            f"params.yaml: sanity.cv_max_rows={settings['max_rows']} is too small "
            f"for {settings['folds']} folds; use at least {10 * settings['folds']}"
        )
    return settings


def cv_check(
    train: pd.DataFrame, train_params: dict[str, Any], settings: dict[str, Any]
) -> sanity.Check:
    """Cross-validate a fresh model (train params) on a capped sample of the training rows."""
    valid_fraction = require(train_params, "valid_fraction", float, "train")
    rows = sanity.subsample(len(train), settings["max_rows"], settings["seed"])
    x = train[FEATURES].iloc[rows].reset_index(drop=True)
    y = train["target"].to_numpy()[rows]

    def fit_predict(x_fit: pd.DataFrame, y_fit: np.ndarray, x_test: pd.DataFrame) -> np.ndarray:
        estimator = model.build(train_params)
        model.fit(estimator, x_fit, y_fit, valid_fraction)
        return model.predict_proba(estimator, x_test)

    log.info(
        "cross-validating a fresh %s: %d folds on %d of %d training rows",
        train_params["model"],
        settings["folds"],
        len(rows),
        len(train),
    )
    started = time.perf_counter()
    aucs = sanity.cross_validate(x, y, fit_predict, settings["folds"], settings["seed"])
    log.info("cross-validation took %.1f s", time.perf_counter() - started)
    return sanity.cv_stable(
        aucs,
        settings["max_deviation"],
        {
            "folds": settings["folds"],
            "rows": len(rows),
            "training_rows": len(train),
            "sampled": len(rows) < len(train),
            # XGBoost stops early on the last train.valid_fraction of each fold's fit rows.
            "early_stopping": train_params["model"] == "xgb",
        },
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    settings = _settings(args.params)
    threshold = require(load_params(args.params, "evaluate"), "threshold", float, "evaluate")
    train_params = load_params(args.params, "train")

    estimator = model.load(args.model)
    evaluation = read_parquet(args.features / "eval.parquet").to_pandas()
    n_eval_rows = read_parquet(args.split / "eval.parquet", columns=["target"]).num_rows
    train = read_parquet(args.features / "train.parquet").to_pandas()
    train_rate = float(train["target"].mean())
    if not 0.0 < train_rate < 1.0:
        raise UserError(
            f"{args.features / 'train.parquet'}: training target has one class only "
            f"(positive rate {train_rate}); check the data and the split"
        )
    p = model.predict_proba(estimator, evaluation[FEATURES])
    log.info(
        "predicted %d eval rows (split has %d); training positive rate %.4f",
        len(p),
        n_eval_rows,
        train_rate,
    )

    checks = [
        sanity.probabilities_valid(p),
        sanity.one_prediction_per_row(len(p), n_eval_rows),
        sanity.not_constant(p),
        sanity.positive_rate(p, threshold, train_rate, settings["tolerance"]),
        cv_check(train, train_params, settings),
    ]
    write_json(sanity.report(checks), args.report)
    for check in checks:
        log.info(
            "%-22s %s: value %s, threshold %s",
            check.name,
            "ok" if check.passed else "FAILED",
            check.value,
            check.threshold,
        )
    message = sanity.failure_message(checks)
    if message:
        raise UserError(f"{message}\nreport: {args.report}")
    log.info("all %d sanity checks passed; report in %s", len(checks), args.report)


if __name__ == "__main__":
    run_main(main)
