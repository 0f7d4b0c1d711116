"""Stage sanity: check the model's predictions and its stability before anything is released.

Checks on the eval rows: valid probabilities, one prediction per row, non-constant predictions,
calibration (mean prediction close to the observed positive rate), discrimination (ROC AUC above
a floor); then a cross-validation of a fresh model whose folds agree (cd4ml.checks). The report
is written even when a check fails; the stage then exits non-zero so that `dvc repro` stops.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pyarrow.parquet as pq

from cd4ml import checks, metrics, model, params
from cd4ml.io import UserError, run_main, write_json
from cd4ml.model import read_features
from cd4ml.split import Split

log = logging.getLogger("sanity")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--features", type=Path, required=True, help="train and eval features")
    parser.add_argument("--split", type=Path, required=True, help="holds eval.parquet (row count)")
    parser.add_argument("--model", type=Path, required=True, help="the model folder")
    parser.add_argument("--report", type=Path, required=True, help="sanity report (JSON)")
    parser.add_argument("--params", default="params.yaml")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    problem = params.problem(args.params)
    settings = params.section(args.params, "sanity", checks.Sanity)
    train_settings = params.section(args.params, "train", model.train_settings(problem.kinds))
    valid_fraction = params.section(args.params, "split", Split).valid_fraction
    threshold = params.section(args.params, "evaluate", metrics.Evaluate).threshold

    fitted = model.load(args.model, problem.kinds)
    x_eval, y = read_features(args.features / "eval.parquet")
    n_eval_rows = pq.read_metadata(args.split / "eval.parquet").num_rows
    x_train, y_train = read_features(args.features / "train.parquet")
    train_rate = float(y_train.mean())
    if not 0.0 < train_rate < 1.0:
        raise UserError(
            f"{args.features / 'train.parquet'}: training target has one class only "
            f"(positive rate {train_rate}); check the data and the split"
        )
    p = fitted.predict(x_eval)
    log.info(
        "predicted %d eval rows (split has %d); positive rate %.4f in training, %.4f in eval",
        len(p),
        n_eval_rows,
        train_rate,
        float(y.mean()),
    )
    results = [
        *checks.prediction_checks(
            p,
            y,
            n_eval_rows,
            settings.calibration_tolerance,
            settings.min_roc_auc,
            threshold,
            {"training_positive_rate": train_rate},
        ),
        checks.cv_check(x_train, y_train, problem.kinds, train_settings, settings, valid_fraction),
    ]
    write_json(checks.report(results), args.report)
    for check in results:
        log.info(
            "%-22s %s: value %s, threshold %s",
            check.name,
            "ok" if check.passed else "FAILED",
            check.value,
            check.threshold,
        )
    message = checks.failure_message(results)
    if message:
        raise UserError(f"{message}\nreport: {args.report}")
    log.info("all %d sanity checks passed; report in %s", len(results), args.report)


if __name__ == "__main__":
    run_main(main)
