"""Stage evaluate: score the model on the eval rows; log metrics, plot data and PNG pictures
with DVCLive (eval/metrics.json, eval/plots/custom/*.json, eval/plots/images/*.png). A simple
baseline (evaluate.baseline_*), fitted here, is scored on the same rows: the gate's bar."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from dvclive import Live

from cd4ml import metrics, model, params, plots
from cd4ml.io import atomic_dir, read_parquet, run_main
from cd4ml.model import read_features
from cd4ml.problem import Problem

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    Rows = tuple[pd.DataFrame, np.ndarray]

log = logging.getLogger("evaluate")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--features", type=Path, required=True)
    parser.add_argument("--split", type=Path, required=True, help="holds eval_truth.parquet")
    parser.add_argument("--model", type=Path, required=True, help="the model folder")
    parser.add_argument("--out", type=Path, required=True, help="DVCLive's folder")
    parser.add_argument("--params", default="params.yaml")
    return parser.parse_args(argv)


def _flat(data: dict, prefix: str = "") -> dict[str, float | int]:
    """Nested metrics as DVCLive's `a/b/c` names; None (undefined) left out."""
    out: dict[str, float | int] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(value, f"{name}/"))
        elif value is not None:
            out[name] = value
    return out


def _baseline(
    problem: Problem,
    where: str,
    settings: metrics.Evaluate,
    fit_rows: Rows,
    valid: Rows,
    rows: Rows,
) -> dict[str, float | int]:
    """The simple baseline (evaluate.baseline_*), fitted and scored on the same eval rows: what
    the gate holds the model against (gate.min_gain_over_baseline)."""
    train = params.section(where, "train", model.train_settings(problem.kinds))
    started = time.perf_counter()
    baseline, used = model.fit_baseline(
        problem.kinds,
        train,
        settings.baseline_kind,
        settings.baseline_features,
        fit_rows,
        valid,
        where,
        max_rows=settings.baseline_max_rows,
    )
    auc = metrics.roc_auc(rows[1], baseline.predict(rows[0][used]))
    log.info(
        "baseline %s on %d features, fitted on %s of %s rows: ROC AUC %.4f (%.1f s)",
        settings.baseline_kind,
        len(used),
        f"{min(len(fit_rows[1]), settings.baseline_max_rows):,}",
        f"{len(fit_rows[1]):,}",
        auc,
        time.perf_counter() - started,
    )
    return {"roc_auc": auc, "n_features": len(used)}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    problem = params.problem(args.params)
    settings = params.section(args.params, "evaluate", metrics.Evaluate)
    fitted = model.load(args.model, problem.kinds)
    x, y = read_features(args.features / "eval.parquet")
    valid_x, valid_y = read_features(args.features / "valid.parquet")
    fit_rows = read_features(args.features / "train.parquet")
    n_fit = len(fit_rows[1])
    p = fitted.predict(x)
    scores = metrics.scores(y, p, settings.threshold)
    confusion = scores.pop("confusion")
    # The valid rows are featurised as eval rows are: their AUC should be close to eval's.
    valid_auc = metrics.roc_auc(valid_y, fitted.predict(valid_x))
    scores.update(n_train=n_fit + len(valid_y), n_eval=len(y), valid_roc_auc=valid_auc)
    if abs(valid_auc - scores["roc_auc"]) > settings.max_valid_gap:
        log.warning(
            "valid (early-stopping) rows ROC AUC %.4f, eval %.4f: apart by more than "
            "evaluate.max_valid_gap %.4f (does the valid part see its own period?)",
            valid_auc,
            scores["roc_auc"],
            settings.max_valid_gap,
        )
    scores["slices"] = metrics.by_slice(y, p, problem.slices(x))
    scores[metrics.BASELINE] = _baseline(
        problem, args.params, settings, fit_rows, (valid_x, valid_y), (x, y)
    )

    truth = read_parquet(args.split / "eval_truth.parquet").column(0)
    oracle_roc = None
    if truth.null_count == 0 and len(truth) == len(y):
        oracle = truth.to_numpy()
        scores["oracle_roc_auc"] = metrics.roc_auc(y, oracle)
        scores["gap_to_oracle"] = scores["oracle_roc_auc"] - scores["roc_auc"]
        oracle_roc = metrics.roc_points(y, oracle)
    else:
        log.info("no truth file (real data?): oracle AUC not reported")

    roc = metrics.roc_points(y, p)
    pr = metrics.pr_points(y, p)
    calibration = metrics.calibration_points(y, p)
    importance = fitted.importances(list(x.columns))
    ranked = sorted(importance.items(), key=lambda kv: -kv[1])
    figures = plots.evaluation(roc, oracle_roc, pr, calibration, importance, scores, confusion)
    figures["slices"] = plots.slices(scores["slices"], len(y))
    # DVCLive writes into a temp folder, swapped in whole: a failed run leaves the last good one.
    with atomic_dir(args.out) as tmp, Live(str(tmp), save_dvc_exp=False, dvcyaml=None) as live:
        for name, value in _flat(scores).items():
            live.log_metric(name, value, plot=False)
        live.log_plot("roc", roc, x="fpr", y="tpr", template="simple", title="ROC (eval rows)")
        live.log_plot(
            "precision_recall", pr, x="recall", y="precision", template="simple", title="PR"
        )
        live.log_plot("calibration", calibration, x="predicted", y="observed", template="simple")
        live.log_plot(
            "confusion",
            metrics.confusion_sample(y, p, settings.threshold),
            x="actual",
            y="predicted",
            template="confusion",
        )
        live.log_plot(
            "slices",
            [{"slice": name, **value} for name, value in scores["slices"].items()],
            x="roc_auc",
            y="slice",
            template="bar_horizontal",
        )
        live.log_plot(
            "feature_importance",
            [{"feature": k, "importance": round(v, 6)} for k, v in ranked],
            x="importance",
            y="feature",
            template="bar_horizontal",
        )
        for name, figure in figures.items():
            live.log_image(f"{name}.png", figure)
            plots.close(figure)
    oracle_text = f" (oracle {scores['oracle_roc_auc']:.4f})" if "oracle_roc_auc" in scores else ""
    log.info("eval rows %d: ROC AUC %.4f%s", len(y), scores["roc_auc"], oracle_text)


if __name__ == "__main__":
    run_main(main)
