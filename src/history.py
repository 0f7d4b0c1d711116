"""Metrics per data version, from git history: a JSON table for DVC plots and a PNG."""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
from pathlib import Path

import yaml

from kkbox.io import UserError, atomic_path, run_main

log = logging.getLogger("history")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--metrics", default="metrics/eval.json")
    parser.add_argument("--data-file", default="data.dvc")
    parser.add_argument("--out", type=Path, default=Path("plots/history"))
    parser.add_argument("--since", help="only commits after this revision (e.g. a data restart)")
    return parser.parse_args(argv)


def _git(*args: str) -> str:
    result = subprocess.run(["git", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise UserError(f"git {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def collect(metrics: str, data_file: str, since: str | None = None) -> list[dict]:
    """One record per commit that changed the metrics, oldest first."""
    records = []
    revisions = [f"{since}..HEAD"] if since else []
    log_lines = _git("log", "--reverse", "--format=%H %s", *revisions, "--", metrics).splitlines()
    for line in log_lines:
        commit, _, subject = line.partition(" ")
        scores = json.loads(_git("show", f"{commit}:{metrics}"))
        try:
            data = yaml.safe_load(_git("show", f"{commit}:{data_file}"))
            md5 = data["outs"][0]["md5"].removesuffix(".dir")[:8]
        except (UserError, KeyError, TypeError):
            md5 = "untracked"
        records.append(
            {
                "version": len(records) + 1,
                "commit": commit[:8],
                "data": md5,
                "rows": scores.get("n_train", 0) + scores.get("n_eval", 0),
                "roc_auc": round(scores["roc_auc"], 5),
                "oracle_roc_auc": round(scores["oracle_roc_auc"], 5)
                if "oracle_roc_auc" in scores
                else None,
                "subject": subject,
            }
        )
    return records


def draw(records: list[dict], path: Path) -> None:
    """ROC AUC (and oracle) and row count per data version."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    records = collect(args.metrics, args.data_file, args.since)
    if not records:
        raise UserError(f"no commit has {args.metrics} yet: run the pipeline and commit it")
    with atomic_path(args.out / "data_versions.json") as tmp:
        tmp.write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")
    draw(records, args.out / "data_versions.png")
    for r in records:
        log.info(
            "v%d %s data %s: %d rows, ROC AUC %.4f",
            r["version"],
            r["commit"],
            r["data"],
            r["rows"],
            r["roc_auc"],
        )


if __name__ == "__main__":
    run_main(main)
