"""Watch the served model: its prediction log against the released bundle's training profile.

    python -m cd4ml.monitor --log logs/predictions --bundle models/bundle
    python -m cd4ml.monitor --log s3://bucket/predictions --labels data/train.csv

Over the last `monitor.window_hours` of the log, in `monitor.buckets` time buckets, it measures
what the validate stage measures on the data (missing rates and category mixes of the
categorical input fields, with cd4ml.validation's own drift function and thresholds), the share
of rows that raise each of the problem's flags (KKBox: an unknown member or song) against the
eval rows' share, and the mean predicted probability against the training positive rate. With
--labels (rows of the examples table with their target, e.g. an ingested chunk) the logged rows
are joined to their targets and the live ROC AUC is reported beside the eval AUC. Writes
metrics/monitor.json and plots/monitor/*.png; exits 1 with one line when a threshold is crossed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import Field

from cd4ml import bundle, metrics, params, predlog, validation
from cd4ml.io import UserError, atomic_path, read_parquet, run_main, write_json
from cd4ml.params import Fraction, Section
from cd4ml.problem import Problem
from cd4ml.reading import read_table

log = logging.getLogger("monitor")

ROWS = bundle.ROWS


class Monitor(Section):
    """params.yaml's monitor: the prediction log against the served bundle's training profile
    (the missing-rate and category-mix thresholds are the validate stage's)."""

    window_hours: Annotated[float, Field(gt=0)]  # the last hours of the log that are judged
    buckets: Annotated[int, Field(ge=1, le=1000)]  # time buckets of the picture
    min_rows: Annotated[int, Field(ge=1)]  # fewer logged rows in the window: nothing to judge
    max_flag_share_change: Fraction  # share of rows raising a flag vs the eval rows' share
    max_mean_probability_change: Fraction  # mean prediction vs the training positive rate


def read_log(where: str, schema: pa.Schema) -> pa.Table:
    """Every file of the prediction log; a file that is not one is a UserError naming it."""
    if where.startswith("s3://"):
        fs = predlog._s3_filesystem()
        paths = sorted(f"s3://{p}" for p in fs.glob(f"{where.rstrip('/')}/predictions-*.parquet"))
        opener = fs.open
    else:
        folder = Path(where)
        if not folder.is_dir():
            raise UserError(f"{where}: no prediction log here; serve with it (make serve) first")
        paths = sorted(str(p) for p in folder.glob("predictions-*.parquet"))
        opener = open
    tables = []
    for path in paths:
        try:
            with opener(path, "rb") as fh:
                table = pq.read_table(fh)
        except (pa.ArrowInvalid, OSError) as err:
            raise UserError(f"{path}: not a readable prediction log file ({err})") from None
        if predlog.REQUEST not in table.column_names:  # written before the column existed
            table = table.append_column(predlog.REQUEST, pa.nulls(table.num_rows, pa.string()))
        missing = [f.name for f in schema if f.name not in table.column_names]
        if missing:
            raise UserError(f"{path}: not a prediction log file: no column(s) {missing}")
        tables.append(table.select(schema.names).cast(schema))
    if not tables:
        raise UserError(f"{where}: the prediction log holds no files yet")
    return pa.concat_tables(tables)


def window(table: pa.Table, hours: float) -> pa.Table:
    """The rows of the last `hours` before the newest row."""
    end = pc.max(table["ts"]).as_py()
    start = pa.scalar(end - pd.Timedelta(hours=hours), pa.timestamp("ms", tz="UTC"))
    return table.filter(pc.greater_equal(table["ts"], start))


def measures(
    rows: pa.Table,
    reference: dict,
    problem: Problem,
    settings: Monitor,
    drift_settings: validation.Validate,
) -> tuple[dict, list[dict]]:
    """The monitor's measures of some logged rows, and the anomalies among them."""
    current = bundle.input_profile(rows, problem)
    known = {ROWS: bundle.categorical_inputs(problem)}
    anomalies = validation.drift(
        current, reference, drift_settings, known, problem.contract.examples
    )
    ref = reference["eval"]
    categories = current["tables"][ROWS].get("categories", {})
    ref_categories = reference["tables"][ROWS].get("categories", {})
    values = {
        "rows": rows.num_rows,
        "flag_shares": {
            name: float(pc.mean(rows[name].cast(pa.float64())).as_py()) for name in problem.flags
        },
        "mean_probability": float(pc.mean(rows["probability"]).as_py()),
        "category_tvd": {
            c: validation.tvd(categories.get(c, {}), ref_categories.get(c, {}))
            for c in known[ROWS]
        },
    }
    checks = [
        (
            name,
            values["flag_shares"][name],
            settings.max_flag_share_change,
            ref["flags"].get(name, 0.0),
            f"rows with {name.replace('_', ' ')}",
        )
        for name in problem.flags
    ]
    checks.append(
        (
            "mean_probability",
            values["mean_probability"],
            settings.max_mean_probability_change,
            reference["positive_rate"],
            "mean predicted probability (against the training positive rate)",
        )
    )
    for name, value, limit, base, what in checks:
        change = abs(value - base)
        if change > limit:
            anomalies.append(
                {
                    "table": ROWS,
                    "column": None,
                    "kind": name,
                    "value": round(change, 6),
                    "threshold": limit,
                    "message": f"{what}: {value:.3f}, the reference {base:.3f} "
                    f"(change {change:.3f} > {limit})",
                }
            )
    return values, anomalies


def read_labels(path: Path, problem: Problem) -> pa.Table:
    """Rows with their targets: a CSV of the examples table, or Parquet."""
    contract = problem.contract
    if path.suffix == ".csv":
        return read_table(path, contract.tables[contract.examples])
    names = [f.name for f in bundle.input_fields(problem.Row)]
    return read_parquet(path, columns=[*names, contract.target])


def _occurrence_keys(frame: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """The input fields plus the occurrence number of each identical row: the n-th logged
    row with these fields joins the n-th labelled one."""
    out = frame.copy()
    out["occurrence"] = out.groupby(names, dropna=False).cumcount()
    return out


def live_auc(logged: pa.Table, labels: pa.Table, names: list[str], target: str) -> dict[str, Any]:
    """The logged rows joined to their targets, and the ROC AUC of the logged probabilities."""
    left = _occurrence_keys(logged.select([*names, "probability"]).to_pandas(), names)
    right = _occurrence_keys(labels.select([*names, target]).to_pandas(), names)
    joined = left.merge(right, on=[*names, "occurrence"], how="inner")
    y = joined[target].to_numpy()
    auc = metrics.roc_auc(y, joined["probability"].to_numpy()) if len(set(y)) == 2 else None
    return {"labelled_rows": len(joined), "logged_rows": logged.num_rows, "roc_auc": auc}


def monitor(args: argparse.Namespace) -> dict:
    problem = params.problem(args.params)
    settings = params.section(args.params, "monitor", Monitor)
    drift_settings = params.section(args.params, "validate", validation.Validate)
    manifest = bundle.verify(args.bundle)
    path = args.bundle / bundle.PROFILE
    reference = json.loads(path.read_text(encoding="utf-8"))
    fields = bundle.input_fields(problem.Row)
    schema = predlog.log_schema(fields, problem.flags)
    rows = window(read_log(args.log, schema), settings.window_hours)
    if rows.num_rows < settings.min_rows:
        raise UserError(
            f"{args.log}: {rows.num_rows} rows in the last {settings.window_hours:g} h, "
            f"fewer than monitor.min_rows {settings.min_rows}: nothing to judge yet"
        )

    def measure(part: pa.Table) -> tuple[dict, list[dict]]:
        return measures(part, reference, problem, settings, drift_settings)

    overall, anomalies = measure(rows)
    report: dict[str, Any] = {
        "log": args.log,
        "window_hours": settings.window_hours,
        "model_versions": sorted({v or "unregistered" for v in rows["model_version"].to_pylist()}),
        "eval_roc_auc": manifest.get("metrics", {}).get("roc_auc"),
        "overall": overall,
        "buckets": _buckets(rows, settings.buckets, measure),
        "anomalies": anomalies,
        "passed": not anomalies,
    }
    if args.labels is not None:
        names = [f.name for f in fields]
        labels = read_labels(args.labels, problem)
        report["live"] = live_auc(rows, labels, names, problem.contract.target)
    write_json(report, args.out)
    _plots(report, reference, settings, drift_settings.max_category_tvd, args.plots)
    return report


def _buckets(rows: pa.Table, buckets: int, measure: Any) -> list[dict]:
    ts = rows["ts"].cast(pa.int64()).to_numpy()
    edges = np.linspace(ts.min(), ts.max() + 1, buckets + 1)
    out = []
    for lo, hi in itertools.pairwise(edges):
        part = rows.filter(pa.array((ts >= lo) & (ts < hi)))
        if part.num_rows:
            values, found = measure(part)
            out.append({"start_ms": int(lo), **values, "anomalies": len(found)})
    return out


def _plots(report: dict, reference: dict, settings: Monitor, max_tvd: float, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    buckets = report["buckets"]
    times = pd.to_datetime([b["start_ms"] for b in buckets], unit="ms", utc=True)
    panels = [
        *[
            (
                name.replace("_", " "),
                [b["flag_shares"][name] for b in buckets],
                reference["eval"]["flags"].get(name, 0.0),
                settings.max_flag_share_change,
            )
            for name in report["overall"]["flag_shares"]
        ],
        (
            "mean probability",
            [b["mean_probability"] for b in buckets],
            reference["positive_rate"],
            settings.max_mean_probability_change,
        ),
        *[
            (f"{c} mix (TVD)", [b["category_tvd"][c] for b in buckets], 0.0, max_tvd)
            for c in report["overall"]["category_tvd"]
        ],
    ]
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.0 * len(panels)), sharex=True)
    axes = np.atleast_1d(axes)
    for ax, (title, values, base, limit) in zip(axes, panels, strict=True):
        ax.plot(times, values, marker="o", label="log")
        ax.axhline(base, color="grey", lw=1, label="reference")
        ax.axhline(base + limit, color="red", ls="--", lw=1, label="threshold")
        if base - limit > 0:
            ax.axhline(base - limit, color="red", ls="--", lw=1)
        ax.set_title(title, fontsize=9)
    axes[0].legend(fontsize=7, loc="upper right")
    fig.suptitle(
        f"Production: {report['overall']['rows']:,} logged rows, "
        f"{'passed' if report['passed'] else 'DRIFT'}"
    )
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "monitor.png") as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--log", default="logs/predictions", help="folder or s3:// prefix")
    parser.add_argument("--bundle", type=Path, default=Path("models/bundle"))
    parser.add_argument("--labels", type=Path, help="rows with targets (CSV or Parquet)")
    parser.add_argument("--out", type=Path, default=Path("metrics/monitor.json"))
    parser.add_argument("--plots", type=Path, default=Path("plots/monitor"))
    parser.add_argument("--params", default="params.yaml")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    report = monitor(args)
    live = report.get("live")
    live_text = ""
    if live is not None and live["roc_auc"] is not None:
        evaluated = report["eval_roc_auc"]
        against = f" (eval {evaluated:.4f})" if evaluated is not None else ""
        live_text = (
            f"; live ROC AUC {live['roc_auc']:.4f} on {live['labelled_rows']:,} labelled "
            f"rows{against}"
        )
    if report["anomalies"]:
        first = report["anomalies"][0]
        more = (
            f" (+{len(report['anomalies']) - 1} more in {args.out})"
            if len(report["anomalies"]) > 1
            else ""
        )
        raise UserError(f"monitor: drift: {first['message']}{more}{live_text}")
    print(
        f"monitor passed: {report['overall']['rows']:,} logged rows in the last "
        f"{report['window_hours']:g} h within every threshold{live_text}; report {args.out}",
        flush=True,
    )


if __name__ == "__main__":
    run_main(main)
