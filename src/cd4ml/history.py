"""Metrics per data version, from git history: a JSON table for DVC plots and a PNG."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from cd4ml import plots
from cd4ml.io import UserError, atomic_path, run_main
from cd4ml.metrics import EVAL_METRICS
from cd4ml.provenance import data_version
from cd4ml.shell import checked, git

log = logging.getLogger("history")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--metrics", default=EVAL_METRICS)
    parser.add_argument("--data-file", default="data.dvc")
    parser.add_argument("--out", type=Path, default=Path("plots/history"))
    parser.add_argument("--since", help="only commits after this revision (e.g. a data restart)")
    return parser.parse_args(argv)


def _git(*args: str) -> str:
    return checked(git(*args), f"git {' '.join(args)}")


def collect(metrics: str, data_file: str, since: str | None = None) -> list[dict]:
    """One record per commit that changed the metrics, oldest first."""
    records = []
    revisions = [f"{since}..HEAD"] if since else []
    log_lines = _git("log", "--reverse", "--format=%H %s", *revisions, "--", metrics).splitlines()
    for line in log_lines:
        commit, _, subject = line.partition(" ")
        scores = json.loads(_git("show", f"{commit}:{metrics}"))
        tracked = git("show", f"{commit}:{data_file}")
        md5 = data_version(tracked.stdout) if tracked.returncode == 0 else None
        records.append(
            {
                "version": len(records) + 1,
                "commit": commit[:8],
                "data": md5.removesuffix(".dir")[:8] if md5 else "untracked",
                "rows": scores.get("n_train", 0) + scores.get("n_eval", 0),
                "roc_auc": round(scores["roc_auc"], 5),
                "oracle_roc_auc": round(scores["oracle_roc_auc"], 5)
                if "oracle_roc_auc" in scores
                else None,
                "subject": subject,
            }
        )
    return records


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    records = collect(args.metrics, args.data_file, args.since)
    if not records:
        raise UserError(f"no commit has {args.metrics} yet: run the pipeline and commit it")
    with atomic_path(args.out / "data_versions.json") as tmp:
        tmp.write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")
    plots.history(records, args.out / "data_versions.png")
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
