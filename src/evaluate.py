"""Stage evaluate: score the model on the eval rows; write metrics, plot data and PNG plots."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from kkbox import metrics, model, params, plots
from kkbox.features import FEATURES
from kkbox.io import (
    atomic_dir,
    atomic_path,
    read_parquet,
    run_main,
    write_json,
)

log = logging.getLogger("evaluate")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--features", type=Path, required=True)
    parser.add_argument("--split", type=Path, required=True, help="holds eval_truth.parquet")
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--plots", type=Path, required=True)
    parser.add_argument("--params", default="params.yaml")
    return parser.parse_args(argv)


def write_plot_data(out: Path, name: str, records: list[dict]) -> None:
    """DVC plot data: a JSON list of records (one point each)."""
    with atomic_path(out / name) as tmp:
        tmp.write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    settings = params.load(args.params).evaluate
    estimator = model.load(args.model)
    frame = read_parquet(args.features / "eval.parquet").to_pandas()
    valid = read_parquet(args.features / "valid.parquet").to_pandas()
    n_fit = read_parquet(args.features / "train.parquet", columns=["target"]).num_rows
    y = frame["target"].to_numpy()
    p = model.predict_proba(estimator, frame[FEATURES])
    scores = metrics.scores(y, p, settings.threshold)
    confusion = scores.pop("confusion")
    # The early-stopping rows are featurised as eval is: their AUC should be close to eval's.
    valid_auc = metrics.roc_auc(
        valid["target"].to_numpy(), model.predict_proba(estimator, valid[FEATURES])
    )
    scores.update(n_train=n_fit + len(valid), n_eval=len(y), valid_roc_auc=valid_auc)
    if abs(valid_auc - scores["roc_auc"]) > settings.max_valid_gap:
        log.warning(
            "early-stopping rows ROC AUC %.4f, eval %.4f: apart by more than "
            "evaluate.max_valid_gap %.4f (does the early-stopping slice see its own period?)",
            valid_auc,
            scores["roc_auc"],
            settings.max_valid_gap,
        )
    # member_plays / song_plays count the member's / song's rows in the training part.
    scores["cold_start"] = metrics.cold_start(
        y, p, frame["member_plays"].to_numpy() > 0, frame["song_plays"].to_numpy() > 0
    )

    truth = read_parquet(args.split / "eval_truth.parquet")["target_probability"]
    oracle_roc = None
    if truth.null_count == 0 and len(truth) == len(y):
        oracle = truth.to_numpy()
        scores["oracle_roc_auc"] = metrics.roc_auc(y, oracle)
        scores["gap_to_oracle"] = scores["oracle_roc_auc"] - scores["roc_auc"]
        oracle_roc = metrics.roc_points(y, oracle)
    else:
        log.info("no truth file (real Kaggle data?): oracle AUC not reported")

    roc = metrics.roc_points(y, p)
    pr = metrics.pr_points(y, p)
    calibration = metrics.calibration_points(y, p)
    importance = model.importances(estimator, FEATURES)
    with atomic_dir(args.plots) as tmp:
        write_plot_data(tmp, "roc.json", roc)
        write_plot_data(tmp, "precision_recall.json", pr)
        write_plot_data(tmp, "calibration.json", calibration)
        write_plot_data(tmp, "confusion.json", metrics.confusion_sample(y, p, settings.threshold))
        write_plot_data(
            tmp,
            "cold_start.json",
            [{"group": g, **v} for g, v in scores["cold_start"].items()],
        )
        write_plot_data(
            tmp,
            "feature_importance.json",
            [
                {"feature": k, "importance": round(v, 6)}
                for k, v in sorted(importance.items(), key=lambda kv: -kv[1])
            ],
        )
        plots.evaluation(
            tmp / "images",
            roc,
            oracle_roc,
            pr,
            calibration,
            importance,
            {**scores, "confusion": confusion},
        )
        plots.cold_start(tmp / "images" / "cold_start.png", scores["cold_start"])
    write_json(scores, args.metrics)
    oracle_text = f" (oracle {scores['oracle_roc_auc']:.4f})" if "oracle_roc_auc" in scores else ""
    log.info("eval rows %d: ROC AUC %.4f%s", len(y), scores["roc_auc"], oracle_text)


if __name__ == "__main__":
    run_main(main)
