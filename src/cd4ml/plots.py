"""The pipeline's pictures (PNG, no browser or CDN needed): evaluation plots, slices, history."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cd4ml.io import atomic_path


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on CI machines
    import matplotlib.pyplot as plt

    return plt


def save(fig: Any, path: Path) -> None:
    """Write a figure as PNG, atomically, without a timestamp (same plot, same bytes)."""
    plt = _pyplot()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)


def close(fig: Any) -> None:
    _pyplot().close(fig)


def evaluation(
    roc: list[dict],
    oracle_roc: list[dict] | None,
    pr: list[dict],
    calibration: list[dict],
    importance: dict[str, float],
    scores: dict,
    confusion: dict[str, int],
) -> dict[str, Any]:
    """ROC (with the oracle's where known), precision-recall, calibration, feature importance
    and the confusion matrix: figures by name (laid out, ready to save)."""
    plt = _pyplot()
    figures = {}
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(
        [r["fpr"] for r in roc],
        [r["tpr"] for r in roc],
        label=f"model (AUC {scores['roc_auc']:.4f})",
    )
    if oracle_roc:
        ax.plot(
            [r["fpr"] for r in oracle_roc],
            [r["tpr"] for r in oracle_roc],
            "--",
            label=f"oracle (AUC {scores['oracle_roc_auc']:.4f})",
        )
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (eval rows)")
    ax.legend(loc="lower right")
    figures["roc"] = fig

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([r["recall"] for r in pr], [r["precision"] for r in pr])
    ax.set(
        xlabel="recall",
        ylabel="precision",
        ylim=(0, 1.02),
        title=f"Precision-recall (AP {scores['pr_auc']:.4f})",
    )
    figures["precision_recall"] = fig

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([c["predicted"] for c in calibration], [c["observed"] for c in calibration], "o-")
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set(
        xlabel="mean predicted probability",
        ylabel="observed replay rate",
        title="Calibration (eval rows)",
    )
    figures["calibration"] = fig

    ranked = sorted(importance.items(), key=lambda kv: kv[1])
    fig, ax = plt.subplots(figsize=(6, 7))
    ax.barh([k for k, _ in ranked], [v for _, v in ranked])
    ax.set(xlabel="share of importance", title="Feature importance")
    figures["feature_importance"] = fig

    c = confusion
    grid = np.array([[c["tn"], c["fp"]], [c["fn"], c["tp"]]])
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(grid, cmap="Blues")
    for (i, j), v in np.ndenumerate(grid):
        color = "white" if v > grid.max() / 2 else "black"
        ax.text(j, i, f"{v:,}", ha="center", va="center", color=color)
    ax.set(
        xticks=[0, 1],
        yticks=[0, 1],
        xticklabels=["0", "1"],
        yticklabels=["0", "1"],
        xlabel="predicted",
        ylabel="actual",
        title="Confusion matrix",
    )
    figures["confusion"] = fig
    for fig in figures.values():
        fig.tight_layout()
    return figures


def history(records: list[dict], path: Path) -> None:
    """ROC AUC (and the oracle's) and train.csv rows per data version."""
    plt = _pyplot()
    x = [r["version"] for r in records]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(x, [r["roc_auc"] for r in records], "o-", label="model ROC AUC")
    if all(r["oracle_roc_auc"] is not None for r in records):
        ax.plot(x, [r["oracle_roc_auc"] for r in records], "s--", label="oracle ROC AUC")
    ax.set(
        xlabel="data version",
        ylabel="ROC AUC (eval rows)",
        xticks=x,
        title="Metrics per data version",
    )
    rows = ax.twinx()
    rows.bar(x, [r["rows"] for r in records], alpha=0.2, color="grey", label="train.csv rows")
    rows.set_ylabel("train.csv rows")
    ax.set_zorder(rows.get_zorder() + 1)
    ax.patch.set_visible(False)
    ax.legend(loc="lower right")
    save(fig, path)


def slices(groups: dict[str, dict], rows: int) -> Any:
    """ROC AUC of each slice of the `rows` eval rows, with its share of them (a slice without
    both classes has no bar): a figure."""
    plt = _pyplot()
    total = rows or 1
    names = list(groups)[::-1]
    aucs = [groups[n]["roc_auc"] or 0.0 for n in names]
    fig, ax = plt.subplots(figsize=(6, 1.5 + 0.5 * len(names)))
    bars = ax.barh(names, aucs)
    for bar, name in zip(bars, names, strict=True):
        g = groups[name]
        text = f"{g['roc_auc']:.3f}" if g["roc_auc"] is not None else "n/a"
        label = f" {text}, {g['rows']:,} rows ({g['rows'] / total:.0%})"
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, label, va="center")
    ax.axvline(0.5, ls=":", color="grey")
    ax.set(xlim=(0, 1.25), xlabel="ROC AUC (eval rows)", title="ROC AUC by slice")
    fig.tight_layout()
    return fig
