"""Stage sanity: check the model's predictions and its stability before anything is released.

Checks on the eval rows: valid probabilities, one prediction per row, non-constant predictions,
calibration (mean prediction close to the observed positive rate), discrimination (ROC AUC above
a floor); then a cross-validation whose folds agree. The share predicted positive at
evaluate.threshold is reported with the calibration, never gated: at a base rate far from 50 %
a good model puts far more (or fewer) rows above the threshold than are positive. The report is
written even when a check fails; the stage then exits non-zero so that `dvc repro` stops.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from kkbox import checks, model, params
from kkbox.features import FEATURES
from kkbox.io import UserError, read_parquet, run_main, write_json

log = logging.getLogger("sanity")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--features", type=Path, required=True, help="train and eval features")
    parser.add_argument("--split", type=Path, required=True, help="holds eval.parquet (row count)")
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--report", type=Path, required=True, help="sanity report (JSON)")
    parser.add_argument("--params", default="params.yaml")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    config = params.load(args.params)
    settings = config.sanity

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
    y = evaluation["target"].to_numpy()
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
            config.evaluate.threshold,
            {"training_positive_rate": train_rate},
        ),
        checks.cv_check(train, config.train, settings, config.preprocess.valid_fraction),
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
