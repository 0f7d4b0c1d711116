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

Private ids: a log whose private fields the service hashed (cd4ml.predlog) is read as it is;
with --labels, the labels' private fields are hashed with CD4ML_LOG_KEY the same way, so they
join. Retention: first, the log's files and the history's records older than
serve.log_retention_days are deleted, and counted in the report. Only the files that can hold
rows of the window are read (their footers say).

Staleness: the served model's data must end less than monitor.max_model_age_days ago (the
manifest's data_end: the examples' latest time; for a problem whose examples have no time
column, the day of the served version's release commit, when the bundle was fetched). With
--labels, the live ROC AUC must stay within monitor.max_live_auc_drop of the eval's.

Retrain trigger: each run appends its window's verdicts to a history kept with the log
(--history, default the log's folder or prefix); a threshold crossed in
monitor.trigger_min_crossings of the last monitor.trigger_windows windows and in the latest
writes a retrain request (--request, default retrain.json beside --out) that CI turns into a
train → gate → rollout pipeline (cd4ml.trigger). The last line gives the trigger's verdict.
"""

from __future__ import annotations

import argparse
import datetime as dt
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
from pydantic import Field, model_validator

from cd4ml import bundle, metrics, params, predlog, registry, trigger, validation
from cd4ml.io import UserError, atomic_path, read_parquet, run_main, write_json
from cd4ml.params import Fraction, Section
from cd4ml.problem import Problem
from cd4ml.reading import read_table
from cd4ml.serve import Serve
from cd4ml.shell import git

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
    max_live_auc_drop: Fraction  # live ROC AUC (with labels) below the bundle's eval ROC AUC
    max_model_age_days: Annotated[float, Field(gt=0)]  # since the end of the model's data
    trigger_windows: Annotated[int, Field(ge=1, le=1000)]  # the last M windows judged ...
    trigger_min_crossings: Annotated[int, Field(ge=1)]  # ... of which N crossed: retrain

    @model_validator(mode="after")
    def _n_of_m(self) -> Monitor:
        if self.trigger_min_crossings > self.trigger_windows:
            raise ValueError(
                f"monitor.trigger_min_crossings={self.trigger_min_crossings} is more than "
                f"monitor.trigger_windows={self.trigger_windows}: the trigger could never fire; "
                "use at most as many crossings as windows"
            )
        return self


def read_log(
    where: str,
    schema: pa.Schema,
    key: bytes = b"",
    since: dt.datetime | None = None,
    last_hours: float | None = None,
) -> pa.Table:
    """The files of the prediction log; a file that is not one is a UserError naming it.

    `schema`: the log's columns with raw ids. Files whose private fields are hashed are read as
    such (the result's metadata names the columns and the key, predlog.hashed_with); files of
    raw ids among them are hashed with `key`. Ids hashed with another key than `key`, or with
    two keys, are a UserError.

    `since`, `last_hours`: only the files that may hold a row at or after `since`, or in the
    last `last_hours` before the log's newest row, are read (judged by the newest time their
    footers record; a file whose footer does not say is read), so that a long log costs its
    recent files. The rows are not filtered: a file read holds older rows too."""
    if not where.startswith("s3://") and not Path(where).is_dir():
        raise UserError(f"{where}: no prediction log here; serve with it (make serve) first")
    opener = predlog.opener(where)
    paths = predlog.listing(where, f"{predlog.PREFIX}*{predlog.SUFFIX}")
    if paths and (since is not None or last_hours is not None):
        newest = {path: newest_row(path, opener) for path in paths}
        if last_hours is not None:
            known = [t for t in newest.values() if t is not None]
            if known:  # the newest row is at least as late: this reads all the window can hold
                recent = max(known) - dt.timedelta(hours=last_hours)
                since = recent if since is None else max(since, recent)
        if since is not None:
            paths = [p for p in paths if newest[p] is None or newest[p] >= since]
            if not paths:
                return schema.empty_table()
    files = {}
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
        files[path] = table
    if not files:
        raise UserError(f"{where}: the prediction log holds no files yet")
    hashed = next((t.schema for t in files.values() if predlog.hashed_with(t.schema)), None)
    if hashed is None:  # raw ids only
        return pa.concat_tables(t.select(schema.names).cast(schema) for t in files.values())
    names = predlog.hashed_columns(hashed)
    target = pa.schema(
        [pa.field(f.name, pa.string()) if f.name in names else f for f in schema],
        metadata=hashed.metadata,
    )
    expected = predlog.fingerprint(key) if key else predlog.hashed_with(hashed)
    tables = []
    for path, table in files.items():
        found = predlog.hashed_with(table.schema)
        if found is None:
            if not key:
                raise UserError(
                    f"{path}: raw ids in a log of ids hashed with key {expected}: set "
                    f"{predlog.KEY_ENV} to that key to hash them the same way"
                )
            table = predlog.hash_columns(table, names, key)
        elif found != expected:
            raise UserError(
                f"{path}: ids hashed with key {found}, {predlog.KEY_ENV} has {expected}"
                if key
                else f"{path}: ids hashed with key {found}, other files with {expected}: set "
                f"{predlog.KEY_ENV} to the service's key to judge its files alone"
            )
        tables.append(table.select(target.names).cast(target))
    return pa.concat_tables(tables)


def newest_row(path: str, opener: Any) -> dt.datetime | None:
    """The time of a log file's newest row, from the statistics in its footer (the data is not
    read); None when the footer does not record them, or the file is not Parquet (read_log then
    reads it, and names it if it is not a log file)."""
    try:
        with opener(path, "rb") as fh:
            meta = pq.ParquetFile(fh).metadata
    except (pa.ArrowInvalid, OSError):
        return None
    column = meta.schema.to_arrow_schema().get_field_index("ts")
    if column < 0 or meta.num_row_groups == 0:
        return None
    found = []
    for group in range(meta.num_row_groups):
        stats = meta.row_group(group).column(column).statistics
        if stats is None or not stats.has_min_max:
            return None
        if not isinstance(stats.max, dt.datetime) or stats.max.tzinfo is None:
            return None  # not the log's UTC time column
        found.append(stats.max)
    return max(found)


def hash_labels(labels: pa.Table, logged: pa.Table, where: str, key: bytes) -> pa.Table:
    """The labels' private fields hashed as the log's (read_log's metadata says which and with
    which key); the labels as they are when the log holds raw ids."""
    found = predlog.hashed_with(logged.schema)
    if found is None:
        return labels
    if not key:
        raise UserError(
            f"{where}: ids hashed with key {found}: set {predlog.KEY_ENV} to that key, so that "
            "the labels' ids are hashed the same way and join"
        )
    if predlog.fingerprint(key) != found:
        raise UserError(
            f"{where}: ids hashed with key {found}, {predlog.KEY_ENV} has "
            f"{predlog.fingerprint(key)}: the labels would join no row"
        )
    return predlog.hash_columns(labels, predlog.hashed_columns(logged.schema), key)


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


def released(path: Path) -> dict[str, str] | None:
    """The data end's stand-in for a problem whose examples have no time column: the day of the
    served version's release commit, which `registry fetch` recorded next to the bundle. Its
    data cannot end later, so the age is never overstated. None for a local build."""
    info = registry.fetched(path) or {}
    commit = info.get("commit")
    if not commit:
        return None
    shown = git("show", "--no-patch", "--format=%cs", commit)
    if shown.returncode != 0:
        raise UserError(
            f"{path.name}.json: release commit {commit} of {info['version']} is not in this "
            "repository: fetch its history (git fetch --tags) to judge the model's age"
        )
    return {"date": shown.stdout.strip(), "source": f"release of {info['version']}"}


def model_age(manifest: dict, now: dt.datetime, limit_days: float) -> tuple[dict, dict | None]:
    """How old the served model's data is: days from the end of the manifest's `data_end` date
    to `now`, and the anomaly past `limit_days`. A manifest with no data end (a bundle built
    before one was recorded) is not judged."""
    recorded = manifest.get("data_end") or {}
    end, source = recorded.get("date"), recorded.get("source")
    value: dict[str, Any] = {"data_end": end, "source": source, "days": None}
    if end is None:
        return value, None
    try:
        day = dt.date.fromisoformat(end)
    except (TypeError, ValueError):
        raise UserError(
            f"{bundle.MANIFEST}: data_end {end!r} is not a YYYY-MM-DD date; rebuild the bundle"
        ) from None
    # The data covers its last day: the age counts from that day's end.
    ended = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.UTC)
    days = max(0.0, (now - ended).total_seconds() / 86400)
    value["days"] = round(days, 3)
    if days <= limit_days:
        return value, None
    return value, {
        "table": None,
        "column": None,
        "kind": "model_age",
        "value": round(days, 3),
        "threshold": limit_days,
        "message": f"the served model's data ends {end} ({source}), {days:.1f} days ago, more "
        f"than monitor.max_model_age_days {limit_days:g}: retrain it on newer data",
    }


def live_auc_drop(live: dict, eval_auc: float | None, limit: float) -> dict | None:
    """The anomaly when the live ROC AUC is below the eval ROC AUC by more than `limit`."""
    if live.get("roc_auc") is None or eval_auc is None:
        return None
    drop = eval_auc - live["roc_auc"]
    if drop <= limit:
        return None
    return {
        "table": None,
        "column": None,
        "kind": "live_auc",
        "value": round(drop, 6),
        "threshold": limit,
        "message": f"live ROC AUC {live['roc_auc']:.4f} on {live['labelled_rows']:,} labelled "
        f"rows, the eval's {eval_auc:.4f} (drop {drop:.4f} > {limit})",
    }


def check_name(anomaly: dict) -> str:
    """The history's name of the check an anomaly crossed (a drift check names its column)."""
    column = anomaly.get("column")
    return f"{anomaly['kind']}:{column}" if column else anomaly["kind"]


def monitor(args: argparse.Namespace) -> dict:
    problem = params.problem(args.params)
    settings = params.section(args.params, "monitor", Monitor)
    drift_settings = params.section(args.params, "validate", validation.Validate)
    retention = params.section(args.params, "serve", Serve).log_retention_days
    manifest = bundle.verify(args.bundle)
    path = args.bundle / bundle.PROFILE
    reference = json.loads(path.read_text(encoding="utf-8"))
    fields = bundle.input_fields(problem.Row)
    schema = predlog.log_schema(fields, problem.flags)
    deleted = predlog.expire(args.log, retention)
    if deleted:
        log.info("%s: %d files older than %g days deleted", args.log, len(deleted), retention)
    history = args.history or args.log
    expired = predlog.expire(history, retention, prefix=trigger.PREFIX, suffix=trigger.SUFFIX)
    if expired:
        log.info(
            "%s: %d history records older than %g days deleted", history, len(expired), retention
        )
    key = predlog.env_key()
    rows = read_log(args.log, schema, key, last_hours=settings.window_hours)
    rows = window(rows, settings.window_hours)
    if rows.num_rows < settings.min_rows:
        raise UserError(
            f"{args.log}: {rows.num_rows} rows in the last {settings.window_hours:g} h, "
            f"fewer than monitor.min_rows {settings.min_rows}: nothing to judge yet"
        )

    def measure(part: pa.Table) -> tuple[dict, list[dict]]:
        return measures(part, reference, problem, settings, drift_settings)

    overall, anomalies = measure(rows)
    now = dt.datetime.now(dt.UTC)
    judged = [*problem.flags, "mean_probability"]
    ended = manifest.get("data_end") or released(args.bundle)
    age, stale = model_age({**manifest, "data_end": ended}, now, settings.max_model_age_days)
    if age["days"] is not None:
        judged.append("model_age")
    if stale is not None:
        anomalies.append(stale)
    eval_auc = manifest.get("metrics", {}).get("roc_auc")
    live = None
    if args.labels is not None:
        names = [f.name for f in fields]
        labels = hash_labels(read_labels(args.labels, problem), rows, args.log, key)
        live = live_auc(rows, labels, names, problem.contract.target)
        if live["roc_auc"] is not None and eval_auc is not None:
            judged.append("live_auc")
        dropped = live_auc_drop(live, eval_auc, settings.max_live_auc_drop)
        if dropped is not None:
            anomalies.append(dropped)
    ts = rows["ts"]
    report: dict[str, Any] = {
        "log": args.log,
        "window_hours": settings.window_hours,
        "window": {
            "start": pc.min(ts).as_py().isoformat(timespec="milliseconds"),
            "end": pc.max(ts).as_py().isoformat(timespec="milliseconds"),
        },
        "model_versions": sorted({v or "unregistered" for v in rows["model_version"].to_pylist()}),
        "ids_hashed_with": predlog.hashed_with(rows.schema),
        "retention": {
            "days": retention,
            "deleted_files": len(deleted),
            "deleted_history_records": len(expired),
        },
        "eval_roc_auc": eval_auc,
        "model_age": {**age, "threshold": settings.max_model_age_days},
        "overall": overall,
        "buckets": _buckets(rows, settings.buckets, measure),
        "anomalies": anomalies,
        "passed": not anomalies,
    }
    if live is not None:
        report["live"] = live
    report["trigger"] = _trigger(args, report, judged, settings, now)
    write_json(report, args.out)
    _plots(report, reference, settings, drift_settings.max_category_tvd, args.plots)
    return report


def _trigger(
    args: argparse.Namespace, report: dict, judged: list[str], settings: Monitor, now: dt.datetime
) -> dict:
    """This run's verdicts appended to the history, and the trigger's verdict on it: the retrain
    request written when it fires, removed when it does not (cd4ml.trigger)."""
    where = args.history or args.log
    checks = {name: False for name in judged}
    checks.update({check_name(a): True for a in report["anomalies"]})
    path = trigger.append(where, trigger.record(report, checks, now), now)
    log.debug("%s: this window's verdicts appended to the history", path)
    verdict = trigger.decide(
        trigger.read(where), settings.trigger_windows, settings.trigger_min_crossings, now
    )
    request = args.request or args.out.with_name("retrain.json")
    verdict["history"] = where
    if verdict["request"] is not None:
        write_json({**verdict["request"], "log": args.log, "history": where}, request)
        verdict["request_file"] = str(request)
    else:
        request.unlink(missing_ok=True)
    return verdict


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


def headline(report: dict) -> str:
    """The picture's title: the rows judged and the verdict, naming what failed."""
    crossed = sorted({_WHAT.get(a["kind"], "drift") for a in report["anomalies"]})
    verdict = "passed" if report["passed"] else f"FAILED: {', '.join(crossed)}"
    return f"Production: {report['overall']['rows']:,} logged rows, {verdict}"


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
    fig.suptitle(headline(report))
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
    parser.add_argument(
        "--history", help="folder or s3:// prefix of the verdicts' history (default: --log's)"
    )
    parser.add_argument(
        "--request", type=Path, help="the retrain request (default: retrain.json beside --out)"
    )
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
    retention = report["retention"]
    if retention["deleted_files"] or retention["deleted_history_records"]:
        live_text += (
            f"; {retention['deleted_files']:,} log files and "
            f"{retention['deleted_history_records']:,} history records older than "
            f"serve.log_retention_days {retention['days']:g} deleted"
        )
    verdict = report["trigger"]
    trigger_text = f"; {trigger.summary(verdict)}"
    if verdict.get("request_file"):
        trigger_text += f": request {verdict['request_file']}"
    if report["anomalies"]:
        first = report["anomalies"][0]
        more = (
            f" (+{len(report['anomalies']) - 1} more in {args.out})"
            if len(report["anomalies"]) > 1
            else ""
        )
        what = _WHAT.get(first["kind"], "drift")
        raise UserError(f"monitor: {what}: {first['message']}{more}{live_text}{trigger_text}")
    print(
        f"monitor passed: {report['overall']['rows']:,} logged rows in the last "
        f"{report['window_hours']:g} h within every threshold{live_text}; report {args.out}"
        f"{trigger_text}",
        flush=True,
    )


_WHAT = {"model_age": "stale model", "live_auc": "live ROC AUC"}  # else: drift


if __name__ == "__main__":
    run_main(main)
