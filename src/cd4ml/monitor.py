"""Watch the served model: its prediction log against the released bundle's training profile.

    python -m cd4ml.monitor --log logs/predictions --bundle models/bundle
    python -m cd4ml.monitor --log s3://bucket/predictions --labels data/train.csv

Over the last `monitor.window_hours` of the log, in `monitor.buckets` time buckets, it measures
what the validate stage measures on the data (missing rates and category mixes of the source
columns, with kkbox.validation's own drift function and thresholds), the share of rows whose
member or song the bundle does not know against the eval rows' share, and the mean predicted
probability against the training positive rate. With --labels (rows with Kaggle's columns and
the target, e.g. an ingested chunk) the logged plays are joined to their targets and the live
ROC AUC is reported beside the eval AUC. Writes metrics/monitor.json and plots/monitor/*.png;
exits 1 with one line when a threshold is crossed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cd4ml import predlog
from kkbox import bundle, metrics, params, raw, schema, validation
from kkbox.features import SOURCE
from kkbox.io import UserError, read_parquet, run_main, write_json

log = logging.getLogger("monitor")

PLAYS = bundle.PLAYS


def read_log(where: str) -> pa.Table:
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
        missing = [f.name for f in predlog.LOG_SCHEMA if f.name not in table.column_names]
        if missing:
            raise UserError(f"{path}: not a prediction log file: no column(s) {missing}")
        tables.append(table.select(predlog.LOG_SCHEMA.names).cast(predlog.LOG_SCHEMA))
    if not tables:
        raise UserError(f"{where}: the prediction log holds no files yet")
    return pa.concat_tables(tables)


def window(table: pa.Table, hours: float) -> pa.Table:
    """The rows of the last `hours` before the newest row."""
    end = pc.max(table["ts"]).as_py()
    start = pa.scalar(end - pd.Timedelta(hours=hours), pa.timestamp("ms", tz="UTC"))
    return table.filter(pc.greater_equal(table["ts"], start))


def measures(rows: pa.Table, reference: dict, settings: params.Params) -> tuple[dict, list[dict]]:
    """The monitor's measures of some logged rows, and the anomalies among them."""
    current = bundle.play_profile(rows)
    anomalies = validation.drift(current, reference, settings.validate)
    ref = reference["eval"]
    limits = settings.monitor
    values = {
        "rows": rows.num_rows,
        "unknown_member_share": float(pc.mean(rows["unknown_member"].cast(pa.float64())).as_py()),
        "unknown_song_share": float(pc.mean(rows["unknown_song"].cast(pa.float64())).as_py()),
        "mean_probability": float(pc.mean(rows["probability"]).as_py()),
        "category_tvd": {
            c: validation.tvd(
                current["tables"][PLAYS]["categories"].get(c, {}),
                reference["tables"][PLAYS]["categories"].get(c, {}),
            )
            for c in SOURCE
        },
    }
    for name, limit, base, what in (
        (
            "unknown_member_share",
            limits.max_unknown_share_change,
            ref["unknown_member_share"],
            "rows with a member the model does not know",
        ),
        (
            "unknown_song_share",
            limits.max_unknown_share_change,
            ref["unknown_song_share"],
            "rows with a song the model does not know",
        ),
        (
            "mean_probability",
            limits.max_mean_probability_change,
            reference["positive_rate"],
            "mean predicted probability (against the training positive rate)",
        ),
    ):
        change = abs(values[name] - base)
        if change > limit:
            anomalies.append(
                {
                    "table": PLAYS,
                    "column": None,
                    "kind": name,
                    "value": round(change, 6),
                    "threshold": limit,
                    "message": f"{what}: {values[name]:.3f}, the reference {base:.3f} "
                    f"(change {change:.3f} > {limit})",
                }
            )
    return values, anomalies


def read_labels(path: Path) -> pa.Table:
    """Plays with their targets: a CSV with Kaggle's train.csv columns, or Parquet."""
    if path.suffix == ".csv":
        return raw.read_table(path, schema.TRAIN)
    return read_parquet(path, columns=[*bundle.INPUT, "target"])


def _occurrence_keys(frame: pd.DataFrame) -> pd.DataFrame:
    """The raw fields plus the occurrence number of each identical play: the n-th logged
    play of a (member, song, sources) joins the n-th labelled one."""
    out = frame.copy()
    out["occurrence"] = out.groupby(list(bundle.INPUT), dropna=False).cumcount()
    return out


def live_auc(logged: pa.Table, labels: pa.Table) -> dict[str, Any]:
    """The logged plays joined to their targets, and the ROC AUC of the logged probabilities."""
    left = _occurrence_keys(logged.select([*bundle.INPUT, "probability"]).to_pandas())
    right = _occurrence_keys(labels.select([*bundle.INPUT, "target"]).to_pandas())
    joined = left.merge(right, on=[*bundle.INPUT, "occurrence"], how="inner")
    y = joined["target"].to_numpy()
    auc = metrics.roc_auc(y, joined["probability"].to_numpy()) if len(set(y)) == 2 else None
    return {"labelled_rows": len(joined), "logged_rows": logged.num_rows, "roc_auc": auc}


def monitor(args: argparse.Namespace) -> dict:
    settings = params.load(args.params)
    scorer_manifest = bundle.verify(args.bundle)
    path = args.bundle / bundle.PROFILE
    if not path.exists():
        raise UserError(
            f"{path}: missing: a bundle from before monitoring; rebuild it (dvc repro)"
        )
    reference = json.loads(path.read_text(encoding="utf-8"))
    rows = window(read_log(args.log), settings.monitor.window_hours)
    if rows.num_rows < settings.monitor.min_rows:
        raise UserError(
            f"{args.log}: {rows.num_rows} rows in the last {settings.monitor.window_hours:g} h, "
            f"fewer than monitor.min_rows {settings.monitor.min_rows}: nothing to judge yet"
        )
    overall, anomalies = measures(rows, reference, settings)
    buckets = _buckets(rows, reference, settings)
    report: dict[str, Any] = {
        "log": args.log,
        "window_hours": settings.monitor.window_hours,
        "model_versions": sorted({v or "unregistered" for v in rows["model_version"].to_pylist()}),
        "eval_roc_auc": scorer_manifest.get("metrics", {}).get("roc_auc"),
        "overall": overall,
        "buckets": buckets,
        "anomalies": anomalies,
        "passed": not anomalies,
    }
    if args.labels is not None:
        report["live"] = live_auc(rows, read_labels(args.labels))
    write_json(report, args.out)
    _plots(report, reference, settings, args.plots)
    return report


def _buckets(rows: pa.Table, reference: dict, settings: params.Params) -> list[dict]:
    ts = rows["ts"].cast(pa.int64()).to_numpy()
    edges = np.linspace(ts.min(), ts.max() + 1, settings.monitor.buckets + 1)
    out = []
    for lo, hi in itertools.pairwise(edges):
        part = rows.filter(pa.array((ts >= lo) & (ts < hi)))
        if part.num_rows:
            values, found = measures(part, reference, settings)
            out.append({"start_ms": int(lo), **values, "anomalies": len(found)})
    return out


def _plots(report: dict, reference: dict, settings: params.Params, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kkbox.io import atomic_path

    buckets = report["buckets"]
    times = pd.to_datetime([b["start_ms"] for b in buckets], unit="ms", utc=True)
    panels = [
        (
            "unknown members",
            [b["unknown_member_share"] for b in buckets],
            reference["eval"]["unknown_member_share"],
            settings.monitor.max_unknown_share_change,
        ),
        (
            "unknown songs",
            [b["unknown_song_share"] for b in buckets],
            reference["eval"]["unknown_song_share"],
            settings.monitor.max_unknown_share_change,
        ),
        (
            "mean probability",
            [b["mean_probability"] for b in buckets],
            reference["positive_rate"],
            settings.monitor.max_mean_probability_change,
        ),
        *[
            (
                f"{c} mix (TVD)",
                [b["category_tvd"][c] for b in buckets],
                0.0,
                settings.validate.max_category_tvd,
            )
            for c in SOURCE
        ],
    ]
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.0 * len(panels)), sharex=True)
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
    parser.add_argument("--labels", type=Path, help="plays with targets (CSV or Parquet)")
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
