"""How fast the model goes stale: trained on the examples up to a cut, scored on successive later
windows in time order; ROC AUC against model age, as a table and a picture.

The examples are in time order, as the split stage takes them (the tail is the future). The
rows before the cut are split as the pipeline splits its training part (its last
split.valid_fraction is where the model stops early), featurised by the problem's fit and
trained as the train stage trains (params.yaml's preprocess and train sections, their seeds).
The rows after the cut are featurised as eval rows are, from the training rows only, and cut
into equal windows. A window's age is the share of the examples between the cut and its middle
row (rows stand for time: the synthetic data draws one play per 1/n of its period). Where the
data has the true probability, each window's oracle ROC AUC says how hard the window is, so the
gap to it is the staleness, apart from the window's own difficulty.

    python -m tools.staleness --data data --out reports/staleness [--cut 0.5 --windows 5]
"""

from __future__ import annotations

import argparse
import csv
import itertools
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from cd4ml import params, plots
from cd4ml.io import UserError, atomic_path, run_main, write_json
from cd4ml.model import read_features
from cd4ml.split import Split, split
from tools import retrain

log = logging.getLogger("staleness")

COLUMNS = (
    "window",
    "first_row",
    "last_row",
    "rows",
    "age",
    "positive_rate",
    "roc_auc",
    "oracle_roc_auc",
    "gap_to_oracle",
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data"), help="the raw tables")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", type=Path, default=Path("reports/staleness"))
    parser.add_argument(
        "--cut", type=float, default=0.5, help="share of the examples the model trains on"
    )
    parser.add_argument("--windows", type=int, default=5, help="windows after the cut")
    parser.add_argument("--work", type=Path, help="work folder (default: a temp folder)")
    return parser.parse_args(argv)


def check_args(cut: float, windows: int) -> None:
    """One line for a cut or a window count that leaves nothing to train or score."""
    if not 0 < cut < 1:
        raise UserError(f"--cut {cut}: the share of the examples to train on must be in (0, 1)")
    if windows < 1:
        raise UserError(f"--windows {windows}: score at least one window after the cut")


def split_settings(path: str | Path, cut: float) -> Split:
    """params.yaml's split section with the eval part starting at the cut."""
    settings = params.section(path, "split", Split)
    return Split.model_validate({**settings.model_dump(), "eval_fraction": 1 - cut})


def windows_of(n_rows: int, windows: int) -> list[tuple[int, int]]:
    """Equal consecutive windows (start, stop) of `n_rows` rows after the cut."""
    if n_rows < windows:
        raise UserError(
            f"{n_rows} rows after the cut cannot make {windows} windows; lower --windows or --cut"
        )
    edges = np.linspace(0, n_rows, windows + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(edges)]


def curve(
    y: np.ndarray,
    p: np.ndarray,
    truth: np.ndarray,
    cut: int,
    n_examples: int,
    windows: int,
) -> list[dict[str, Any]]:
    """One row of the table per window of the scored rows after the cut (y, p and truth; truth
    NaN where unknown): rows, age (share of the examples from the cut to its middle), ROC AUC,
    the oracle's and the gap between them."""
    out = []
    for i, (start, stop) in enumerate(windows_of(len(y), windows)):
        rows = slice(start, stop)
        auc = retrain.auc_or_none(y[rows], p[rows])
        known = truth[rows]
        oracle = retrain.auc_or_none(y[rows], known) if not np.isnan(known).any() else None
        out.append(
            {
                "window": i + 1,
                "first_row": cut + start,
                "last_row": cut + stop - 1,
                "rows": stop - start,
                "age": round((start + stop - 1) / 2 / n_examples, 4),
                "positive_rate": round(float(y[rows].mean()), 4),
                "roc_auc": None if auc is None else round(auc, 4),
                "oracle_roc_auc": None if oracle is None else round(oracle, 4),
                "gap_to_oracle": None if None in (auc, oracle) else round(oracle - auc, 4),
            }
        )
    return out


def slope(table: list[dict[str, Any]], key: str = "roc_auc") -> float | None:
    """Least-squares change of `key` per 0.1 of age (None with fewer than two values)."""
    points = [(r["age"], r[key]) for r in table if r[key] is not None]
    if len(points) < 2:
        return None
    ages, values = np.array(points).T
    return round(float(np.polyfit(ages, values, 1)[0]) * 0.1, 4)


def markdown(report: dict[str, Any]) -> str:
    """The table, with what was trained and the slopes."""
    lines = [
        f"Model trained on the first {report['train_rows']:,} of {report['examples']:,} examples "
        f"({report['cut']:.0%}; {report['valid_rows']:,} of them for early stopping), "
        f"{report['model']} kind; {report['windows']} windows after the cut. Age: share of the "
        "examples from the cut to the window's middle row.",
        "",
        "| window | rows | age | positive rate | ROC AUC | oracle ROC AUC | gap to oracle |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["table"]:
        cells = [_cell(r[c]) for c in ("positive_rate", "roc_auc", "oracle_roc_auc")]
        lines.append(
            f"| {r['window']} | {r['first_row']:,}-{r['last_row']:,} | {r['age']:.3f} | "
            + " | ".join(cells)
            + f" | {_cell(r['gap_to_oracle'], '+')} |"
        )
    lines += [
        "",
        f"ROC AUC change per 0.1 of age (least squares): {_cell(report['slope'], '+')}; gap "
        f"to the oracle: {_cell(report['gap_slope'], '+')}.",
    ]
    return "\n".join(lines) + "\n"


def _cell(value: float | None, sign: str = "") -> str:
    return "" if value is None else f"{value:{sign}.4f}"


def write_csv(table: list[dict[str, Any]], path: Path) -> None:
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(table)


def picture(report: dict[str, Any], path: Path) -> None:
    """ROC AUC (and the oracle's) against the model's age, PNG."""
    table = report["table"]
    fig, ax = plots._pyplot().subplots(figsize=(6, 4))  # matplotlib as cd4ml.plots sets it
    ages = [r["age"] for r in table]
    ax.plot(ages, [r["roc_auc"] for r in table], "o-", label="model ROC AUC")
    if all(r["oracle_roc_auc"] is not None for r in table):
        ax.plot(ages, [r["oracle_roc_auc"] for r in table], "s--", label="oracle ROC AUC")
    ax.set(
        xlabel="model age (share of the examples since the cut)",
        ylabel="ROC AUC of the window",
        title=f"Staleness: trained on the first {report['cut']:.0%} of the examples",
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    plots.save(fig, path)


def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Split at the cut, featurise, train, score each window: the report."""
    problem = params.problem(args.params)
    settings = split_settings(args.params, args.cut)
    train = retrain.train_settings(problem, args.params)
    log.info("step 1/4: reading the examples of %s", args.data)
    examples, truth = retrain.read_examples(args.data, problem)
    parts = split(examples, truth, settings)
    n = examples.num_rows
    cut = n - parts["eval"].num_rows
    log.info(
        "step 2/4: featurising: %d training rows (%d of them early stopping), %d after the cut",
        cut,
        parts["valid"].num_rows,
        parts["eval"].num_rows,
    )
    featurize_s = retrain.featurize(problem, args.data, parts, args.params, work)
    log.info("featurised in %.1f s", featurize_s)
    log.info("step 3/4: training a %s model", train.model)
    fitted, info, train_s = retrain.fit(problem, train, work / "features")
    log.info("trained in %.1f s %s", train_s, info)
    log.info("step 4/4: scoring %d windows", args.windows)
    x, y = read_features(work / "features" / "eval.parquet")
    p = fitted.predict(x)
    known = parts["eval_truth"].column(0).to_numpy(zero_copy_only=False).astype(float)
    table = curve(y, p, known, cut, n, args.windows)
    for r in table:
        log.info("window %d (age %.3f): ROC AUC %s", r["window"], r["age"], r["roc_auc"])
    _check_order(parts["eval"][problem.contract.target].to_numpy(), y)
    return {
        "problem": problem.name,
        "model": train.model,
        "seed": train.seed,
        "examples": n,
        "cut": args.cut,
        "train_rows": cut,
        "valid_rows": parts["valid"].num_rows,
        "windows": args.windows,
        "featurize_seconds": round(featurize_s, 1),
        "train_seconds": round(train_s, 1),
        "fit": info,
        "table": table,
        "slope": slope(table),
        "gap_slope": slope(table, "gap_to_oracle"),
    }


def _check_order(target: np.ndarray, y: np.ndarray) -> None:
    """The features of the rows after the cut must be those rows, in order."""
    if not np.array_equal(target, y):
        raise UserError(
            "the problem's fit wrote the eval features in another order than its rows; the "
            "windows need them in time order"
        )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    check_args(args.cut, args.windows)
    with tempfile.TemporaryDirectory(prefix="staleness-") as tmp:
        work = args.work or Path(tmp)
        report = measure(args, work)
    write_json(report, args.out / "staleness.json")
    write_csv(report["table"], args.out / "staleness.csv")
    with atomic_path(args.out / "staleness.md") as tmp_md:
        tmp_md.write_text(markdown(report), encoding="utf-8")
    picture(report, args.out / "staleness.png")
    log.info("wrote %s/staleness.{json,csv,md,png}", args.out)
    print(markdown(report), end="")


if __name__ == "__main__":
    run_main(main)
