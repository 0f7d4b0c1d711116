"""The evaluation report: one self-contained offline HTML page (make report).

    python -m cd4ml.report --out reports/index.html

From what the pipeline and the gate left: the gate's verdict (metrics/gate.json), the eval
metrics, ROC / precision-recall / calibration of the challenger (models/bundle) and the champion
(models/champion) scored on the same raw eval rows, feature importance, data validation and
drift, ROC AUC per data version (git history), each slice's ROC AUC, the provenance and the
params that differ from the champion's, and production (metrics/monitor.json) when there is a
report. The page is templates/report.html (Jinja2, autoescaped); pictures are PNG inlined as
data: URIs, and there is no script: it renders with no network.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import logging
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from cd4ml import bundle, history, metrics, params, plots
from cd4ml import gate as gates
from cd4ml.io import UserError, atomic_path, read_parquet, run_main

log = logging.getLogger("report")


def _json(path: Path) -> Any:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise UserError(f"{path}: not valid JSON ({err}); rerun the step that makes it") from None


def cell(value: Any) -> str:
    """A table cell: 4 decimals, thousands separators, '-' for nothing."""
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "-" if value is None else str(value)


def _png(fig: Any) -> str:
    """A figure as base64 PNG (no timestamp, so the same figure gives the same page)."""
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=80, metadata={"Software": None})
    plots.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _image_file(path: Path) -> str | None:
    return base64.b64encode(path.read_bytes()).decode("ascii") if path.exists() else None


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


def _gate_rows(gate: dict) -> list[tuple]:
    interval = gate.get("interval")
    return [
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


def _gate_tables(gate: dict) -> dict:
    """The gate's per-slice and serving-cost tables (none in a report made without them)."""
    slices, cost = gate.get("slices"), gate.get("serving_cost")
    return {
        "gate_slices": gates.slice_rows(slices) if slices else [],
        "gate_slice_header": gates.SLICE_HEADER,
        "gate_cost": gates.cost_rows(cost) if cost else [],
        "gate_cost_header": gates.COST_HEADER,
    }


def _validation(report: dict | None) -> dict | None:
    if report is None:
        return None
    checks = report.get("checks", {})
    drift = report.get("drift", {})
    return {
        "status": report.get("status"),
        "rules": checks.get("rules", 0),
        "passed": checks.get("rules", 0) - checks.get("failed", 0),
        "tables": [(name, t.get("rows")) for name, t in report.get("tables", {}).items()],
        "quirks": [
            (table, column, quirk, count)
            for table, columns in report.get("quirks", {}).items()
            for column, found in columns.items()
            for quirk, count in found.items()
            if count
        ],
        "thresholds": list(drift.get("thresholds", {}).items()),
        "anomalies": [(a["kind"], a["message"]) for a in drift.get("anomalies", [])],
    }


def _history(metrics_file: str, current: dict | None) -> list[tuple] | str:
    """ROC AUC per data version from git history, and this run's; or why there is none."""
    try:
        records = history.collect(metrics_file, "data.dvc")
    except UserError as err:
        return str(err).splitlines()[0]
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
    return rows


def _production(monitor: dict | None) -> dict | None:
    if monitor is None:
        return None
    overall = monitor["overall"]
    rows = [
        ("logged rows in the window", overall["rows"]),
        ("model versions", ", ".join(monitor.get("model_versions", []))),
        *[(f"share of rows: {k.replace('_', ' ')}", v) for k, v in overall["flag_shares"].items()],
        ("mean predicted probability", overall["mean_probability"]),
        *[(f"{c} mix TVD", v) for c, v in overall["category_tvd"].items()],
        ("live ROC AUC", (monitor.get("live") or {}).get("roc_auc")),
        ("eval ROC AUC", monitor.get("eval_roc_auc")),
    ]
    return {"rows": rows, "anomalies": [(a["kind"], a["message"]) for a in monitor["anomalies"]]}


METRICS = (
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


def build(args: argparse.Namespace) -> str:
    """The page's HTML."""
    problem = params.problem(args.params)
    scores = _json(args.metrics) or {}
    gate = _json(args.gate)
    challenger = bundle.load(args.challenger, problem)
    has_champion = (args.champion / bundle.MANIFEST).exists()
    champion = bundle.load(args.champion, problem) if has_champion else None
    rows = read_parquet(args.rows)
    y = rows[problem.contract.target].to_numpy()
    scored = {"challenger": challenger.predict_proba(rows)}
    if champion is not None:
        scored[gate["champion"] if gate else "champion"] = champion.predict_proba(rows)
    importance = _json(args.eval / "plots" / "custom" / "feature_importance.json") or []
    manifest = challenger.manifest
    build_info = manifest.get("build") or {}
    provenance = [
        ("build (content hash of the code and params)", build_info.get("sha256")),
        ("code files", len((build_info.get("code") or {}).get("files", {}))),
        ("data version", manifest.get("data_version")),
        ("model", manifest.get("model")),
        ("champion", gate["champion"] if gate else None),
    ]
    diff = (
        params_diff(
            build_info.get("params", {}), (champion.manifest.get("build") or {}).get("params", {})
        )
        if champion is not None
        else []
    )
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("cd4ml", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    environment.filters["cell"] = cell
    return environment.get_template("report.html").render(
        name=problem.name,
        gate=gate,
        gate_rows=_gate_rows(gate) if gate else [],
        **_gate_tables(gate or {}),
        metric_rows=[(k, scores[k]) for k in METRICS if scores.get(k) is not None],
        curves=curves(scored, y),
        importance=importance_chart(importance) if importance else None,
        validation=_validation(_json(args.validation)),
        history=_history(str(args.metrics), scores or None),
        slice_rows=[
            (g, v.get("rows"), v.get("roc_auc")) for g, v in scores.get("slices", {}).items()
        ],
        slices=_image_file(args.eval / "plots" / "images" / "slices.png"),
        provenance=provenance,
        champion=champion is not None,
        params_diff=diff,
        production=_production(_json(args.monitor)),
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    add = parser.add_argument
    add("--out", type=Path, default=Path("reports/index.html"))
    add("--challenger", type=Path, default=Path("models/bundle"))
    add("--champion", type=Path, default=Path("models/champion"))
    add("--rows", type=Path, default=Path("clean_data/split/eval.parquet"))
    add("--metrics", type=Path, default=Path(metrics.EVAL_METRICS))
    add("--eval", type=Path, default=Path(metrics.EVAL_METRICS).parent, help="DVCLive's folder")
    add("--gate", type=Path, default=Path("metrics/gate.json"))
    add("--validation", type=Path, default=Path("metrics/data_validation.json"))
    add("--monitor", type=Path, default=Path("metrics/monitor.json"))
    add("--params", default="params.yaml")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    page = build(args)
    with atomic_path(args.out) as tmp:
        tmp.write_text(page, encoding="utf-8")
    log.info("wrote %s (%.0f kB, offline: no script, pictures inlined)", args.out, len(page) / 1e3)


if __name__ == "__main__":
    run_main(main)
