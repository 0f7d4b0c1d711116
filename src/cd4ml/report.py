"""The evaluation report: one self-contained offline HTML page (make report).

    python -m cd4ml.report --out reports/index.html

From what the pipeline and the gate left: the gate's verdict (metrics/gate.json), the eval
metrics, ROC / precision-recall / calibration of the challenger (models/bundle) and the champion
(models/champion) scored on the same raw eval rows, feature importance, data validation and
drift, ROC AUC per data version (git history), the cold-start breakdown, the provenance and the
params that differ from the champion's, and production (metrics/monitor.json) when there is a
report. Pictures are PNG inlined as data: URIs; there is no script: it renders with no network.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from cd4ml import history
from kkbox import bundle, metrics, plots
from kkbox.io import UserError, atomic_path, read_parquet, run_main

log = logging.getLogger("report")

SECTIONS = {
    "verdict": "Gate: challenger against champion",
    "metrics": "Eval metrics",
    "curves": "ROC, precision-recall and calibration",
    "importance": "Feature importance",
    "data": "Data validation",
    "history": "ROC AUC per data version",
    "cold-start": "Cold start",
    "provenance": "Provenance",
    "production": "Production",
}
CSS = """
body{font-family:DejaVu Sans,Arial,sans-serif;margin:24px auto;max-width:1100px;color:#222}
h1{font-size:22px}
h2{font-size:17px;border-bottom:1px solid #ccc;padding-bottom:3px;margin-top:28px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}th{background:#f4f4f4}
.pass{color:#fff;background:#2e7d32;padding:6px 10px;display:inline-block;border-radius:4px}
.fail{color:#fff;background:#c62828;padding:6px 10px;display:inline-block;border-radius:4px}
.note{color:#666;font-size:12px}img{max-width:100%}
"""


def _json(path: Path) -> Any:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise UserError(f"{path}: not valid JSON ({err}); rerun the step that makes it") from None


def _table(rows: list[tuple], header: tuple | None = None) -> str:
    out = ["<table>"]
    if header:
        out.append("<tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr>")
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>")
    return "".join(out) + "</table>"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "-" if value is None else str(value)


def _png(fig: Any) -> str:
    """A figure as an inline <img> (no timestamp, so the same figure gives the same page)."""
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=80, metadata={"Software": None})
    plots._pyplot().close(fig)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="chart" src="data:image/png;base64,{data}">'


def _image_file(path: Path) -> str:
    if not path.exists():
        return '<p class="note">no picture</p>'
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.name)}" src="data:image/png;base64,{data}">'


def curves(scored: dict[str, np.ndarray], y: np.ndarray) -> str:
    """ROC, precision-recall and calibration, every model on each chart."""
    plt = plots._pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for name, p in scored.items():
        roc = metrics.roc_points(y, p)
        pr = metrics.pr_points(y, p)
        cal = metrics.calibration_points(y, p)
        auc = metrics.roc_auc(y, p)
        axes[0].plot([r["fpr"] for r in roc], [r["tpr"] for r in roc], label=f"{name} {auc:.4f}")
        axes[1].plot([r["recall"] for r in pr], [r["precision"] for r in pr], label=name)
        axes[2].plot(
            [c["predicted"] for c in cal], [c["observed"] for c in cal], marker="o", label=name
        )
    axes[0].plot([0, 1], [0, 1], color="grey", lw=0.8)
    axes[2].plot([0, 1], [0, 1], color="grey", lw=0.8)
    for ax, (title, x, yl) in zip(
        axes,
        [
            ("ROC (AUC)", "false positive rate", "true positive rate"),
            ("Precision-recall", "recall", "precision"),
            ("Calibration", "predicted", "observed"),
        ],
        strict=True,
    ):
        ax.set_title(title)
        ax.set_xlabel(x)
        ax.set_ylabel(yl)
        ax.legend(fontsize=8)
    return _png(fig)


def importance_chart(records: list[dict]) -> str:
    plt = plots._pyplot()
    top = sorted(records, key=lambda r: -r["importance"])[:15][::-1]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.barh([r["feature"] for r in top], [r["importance"] for r in top])
    ax.set_xlabel("share of total gain")
    return _png(fig)


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        out.update(_flat(value, f"{prefix}.{key}" if prefix else key))
    return out


def params_diff(new: dict, old: dict) -> list[tuple[str, Any, Any]]:
    """(key, challenger, champion) for every param whose value differs."""
    a, b = _flat(new), _flat(old)
    return [(k, a.get(k), b.get(k)) for k in sorted({*a, *b}) if a.get(k) != b.get(k)]


def _verdict(gate: dict | None) -> str:
    if gate is None:
        return '<p class="note">no gate report yet (make compare writes metrics/gate.json)</p>'
    badge = "pass" if gate["passed"] else "fail"
    interval = gate.get("interval")
    rows = [
        ("challenger (this pipeline) ROC AUC", gate["challenger_roc_auc"]),
        (f"champion: {gate['champion']} ROC AUC", gate["champion_roc_auc"]),
        ("difference", f"{gate['difference']:+.4f}"),
        (
            "interval of the difference",
            f"{interval['low']:+.4f} .. {interval['high']:+.4f} ({interval['confidence']:.0%}, "
            "paired bootstrap)"
            if interval
            else "none (no released bundle: baseline.txt's number)",
        ),
        ("eval rows", gate.get("n_rows")),
        ("gate.min_improvement / decides on", f"{gate['min_improvement']} / {gate['decide_on']}"),
    ]
    return (
        f'<p><span class="{badge}" id="verdict-line">{html.escape(gate["message"])}</span></p>'
        + _table(rows)
    )


def _data(validation: dict | None) -> str:
    if validation is None:
        return '<p class="note">no data validation report (metrics/data_validation.json)</p>'
    rows = [(name, t.get("rows")) for name, t in validation.get("tables", {}).items()]
    checks = validation.get("checks", {})
    quirks = [
        (table, column, quirk, count)
        for table, columns in validation.get("quirks", {}).items()
        for column, found in columns.items()
        for quirk, count in found.items()
        if count
    ]
    drift = validation.get("drift", {})
    thresholds = list(drift.get("thresholds", {}).items())
    anomalies = [(a["kind"], a["message"]) for a in drift.get("anomalies", [])]
    return (
        f"<p>status <b>{html.escape(str(validation.get('status')))}</b>: "
        f"{checks.get('rules', 0) - checks.get('failed', 0)} of {checks.get('rules', 0)} checks "
        f"passed.</p>"
        + _table(rows, ("table", "rows"))
        + "<h3>Quirks counted</h3>"
        + _table(quirks, ("table", "column", "quirk", "rows"))
        + "<h3>Drift against the reference</h3>"
        + _table(thresholds, ("threshold", "value"))
        + (_table(anomalies, ("kind", "anomaly")) if anomalies else "<p>no drift anomaly</p>")
    )


def _history(current: dict | None) -> str:
    try:
        records = history.collect("metrics/eval.json", "data.dvc")
    except UserError as err:
        return f'<p class="note">no history ({html.escape(str(err).splitlines()[0])})</p>'
    rows = [
        (r["version"], r["commit"], r["data"], r["rows"], r["roc_auc"], r["oracle_roc_auc"])
        for r in records
    ]
    if current is not None:
        rows.append(
            (
                "this run",
                "workspace",
                "",
                current.get("n_train", 0) + current.get("n_eval", 0),
                current.get("roc_auc"),
                current.get("oracle_roc_auc"),
            )
        )
    return _table(rows, ("version", "commit", "data", "rows", "ROC AUC", "oracle ROC AUC"))


def _cold_start(scores: dict | None, images: Path) -> str:
    groups = (scores or {}).get("cold_start", {})
    rows = [(g, v.get("rows"), v.get("roc_auc")) for g, v in groups.items()]
    return _table(rows, ("group", "eval rows", "ROC AUC")) + _image_file(images / "cold_start.png")


def _production(monitor: dict | None) -> str:
    if monitor is None:
        return (
            '<p class="note">no monitoring report (make monitor writes metrics/monitor.json)</p>'
        )
    overall = monitor["overall"]
    rows = [
        ("logged rows in the window", overall["rows"]),
        ("model versions", ", ".join(monitor.get("model_versions", []))),
        ("unknown member share", overall["unknown_member_share"]),
        ("unknown song share", overall["unknown_song_share"]),
        ("mean predicted probability", overall["mean_probability"]),
        *[(f"{c} mix TVD", v) for c, v in overall["category_tvd"].items()],
        ("live ROC AUC", (monitor.get("live") or {}).get("roc_auc")),
        ("eval ROC AUC", monitor.get("eval_roc_auc")),
    ]
    anomalies = [(a["kind"], a["message"]) for a in monitor.get("anomalies", [])]
    return _table(rows) + (
        _table(anomalies, ("kind", "drift")) if anomalies else "<p>within every threshold</p>"
    )


def build(args: argparse.Namespace) -> str:
    """The page's HTML."""
    scores = _json(args.metrics)
    gate = _json(args.gate)
    challenger = bundle.load(args.challenger)
    champion = bundle.load(args.champion) if (args.champion / bundle.MANIFEST).exists() else None
    rows = read_parquet(args.rows, columns=[*bundle.INPUT, "target"])
    y = rows["target"].to_numpy()
    scored = {"challenger": challenger.predict_proba(rows)}
    if champion is not None:
        scored[gate["champion"] if gate else "champion"] = champion.predict_proba(rows)
    importance = _json(args.plots / "feature_importance.json") or []
    metric_rows = [
        (k, (scores or {}).get(k))
        for k in (
            "roc_auc",
            "pr_auc",
            "log_loss",
            "accuracy",
            "oracle_roc_auc",
            "gap_to_oracle",
            "valid_roc_auc",
            "n_train",
            "n_eval",
        )
        if (scores or {}).get(k) is not None
    ]
    manifest = challenger.manifest
    provenance = [
        ("git commit (code)", (manifest.get("git") or {}).get("commit")),
        ("uncommitted code", (manifest.get("git") or {}).get("dirty")),
        ("data version", manifest.get("data_version")),
        ("model", manifest.get("model")),
        ("champion", gate["champion"] if gate else None),
    ]
    diff = (
        params_diff(manifest.get("params", {}), champion.manifest.get("params", {}))
        if champion is not None
        else []
    )
    body = {
        "verdict": _verdict(gate),
        "metrics": _table(metric_rows, ("metric", "challenger")),
        "curves": curves(scored, y),
        "importance": importance_chart(importance) if importance else "<p>none</p>",
        "data": _data(_json(args.validation)),
        "history": _history(scores),
        "cold-start": _cold_start(scores, args.plots / "images"),
        "provenance": _table(provenance)
        + (
            "<h3>Params that differ from the champion's</h3>"
            + (_table(diff, ("param", "challenger", "champion")) if diff else "<p>none</p>")
            if champion is not None
            else '<p class="note">no champion bundle to compare</p>'
        ),
        "production": _production(_json(args.monitor)),
    }
    sections = "".join(
        f'<section id="{key}"><h2>{title}</h2>{body[key]}</section>'
        for key, title in SECTIONS.items()
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{bundle.NAME}: evaluation report</title><style>{CSS}</style></head><body>"
        f"<h1>{bundle.NAME}: evaluation report</h1>{sections}</body></html>\n"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    add = parser.add_argument
    add("--out", type=Path, default=Path("reports/index.html"))
    add("--challenger", type=Path, default=Path("models/bundle"))
    add("--champion", type=Path, default=Path("models/champion"))
    add("--rows", type=Path, default=Path("clean_data/split/eval.parquet"))
    add("--metrics", type=Path, default=Path("metrics/eval.json"))
    add("--gate", type=Path, default=Path("metrics/gate.json"))
    add("--validation", type=Path, default=Path("metrics/data_validation.json"))
    add("--monitor", type=Path, default=Path("metrics/monitor.json"))
    add("--plots", type=Path, default=Path("plots/eval"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    page = build(args)
    with atomic_path(args.out) as tmp:
        tmp.write_text(page, encoding="utf-8")
    log.info("wrote %s (%.0f kB, offline: no script, pictures inlined)", args.out, len(page) / 1e3)


if __name__ == "__main__":
    run_main(main)
