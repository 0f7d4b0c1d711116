"""The pipeline's pictures (PNG, no browser or CDN needed): evaluation plots and the history."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from kkbox.io import atomic_path


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


def evaluation(
    out: Path,
    roc: list[dict],
    oracle_roc: list[dict] | None,
    pr: list[dict],
    calibration: list[dict],
    importance: dict[str, float],
    scores: dict,
) -> None:
    """ROC (with the oracle's where known), precision-recall, calibration, feature importance
    and the confusion matrix, one PNG each in `out`."""
    plt = _pyplot()
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
    save(fig, out / "roc.png")

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([r["recall"] for r in pr], [r["precision"] for r in pr])
    ax.set(
        xlabel="recall",
        ylabel="precision",
        ylim=(0, 1.02),
        title=f"Precision-recall (AP {scores['pr_auc']:.4f})",
    )
    save(fig, out / "precision_recall.png")

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([c["predicted"] for c in calibration], [c["observed"] for c in calibration], "o-")
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set(
        xlabel="mean predicted probability",
        ylabel="observed replay rate",
        title="Calibration (eval rows)",
    )
    save(fig, out / "calibration.png")

    ranked = sorted(importance.items(), key=lambda kv: kv[1])
    fig, ax = plt.subplots(figsize=(6, 7))
    ax.barh([k for k, _ in ranked], [v for _, v in ranked])
    ax.set(xlabel="share of importance", title="Feature importance")
    save(fig, out / "feature_importance.png")

    c = scores["confusion"]
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
    save(fig, out / "confusion.png")


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


def cold_start(path: Path, groups: dict[str, dict]) -> None:
    """ROC AUC of the eval rows by whether their member and song were seen in training, with
    each group's share of the rows (a group without both classes has no bar)."""
    plt = _pyplot()
    total = sum(g["rows"] for g in groups.values()) or 1
    names = list(groups)[::-1]
    aucs = [groups[n]["roc_auc"] or 0.0 for n in names]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    bars = ax.barh(names, aucs)
    for bar, name in zip(bars, names, strict=True):
        g = groups[name]
        text = f"{g['roc_auc']:.3f}" if g["roc_auc"] is not None else "n/a"
        label = f" {text}, {g['rows']:,} rows ({g['rows'] / total:.0%})"
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, label, va="center")
    ax.axvline(0.5, ls=":", color="grey")
    ax.set(xlim=(0, 1.25), xlabel="ROC AUC (eval rows)", title="Cold start: seen in training?")
    save(fig, path)
