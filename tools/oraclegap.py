"""Why the model falls short of the oracle: the model retrained with the synthetic generator's
hidden parts of the logit added to its features, one group of parts at a time.

The oracle is the true replay probability of each eval row: it knows each member's bias, each
song's appeal and each member's hidden genres, favourite artists and language. The pipeline
has to estimate them from the training rows, and a member with 20 plays or a song with 2 gives
no model an exact estimate. Handing the model a true part shows what estimating it costs; with
every part the model comes back to the oracle, which checks the method.

The model is the xgb kind with params.yaml's train.xgb settings and train.seed (whatever
train.model is), fitted on the preprocess stage's train features, stopped early on its valid
ones and scored on its eval ones, the hidden parts of each row added as columns.

    python -m tools.oraclegap --data data --features clean_data/features --out bench
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

from cd4ml import metrics, model, params
from cd4ml.io import UserError, atomic_path, read_parquet, run_main, write_json
from cd4ml.reading import read_table
from kkbox import PROBLEM, synth, tables
from kkbox.kinds.xgb import KIND

log = logging.getLogger("oraclegap")

TASTE = ("genre_match", "artist_match", "language_match")
# The model's features plus these true parts (synth.logit_parts' names).
CASES: dict[str, tuple[str, ...]] = {
    "the pipeline's features": (),
    "+ the member's taste (genre, artist, language matches)": TASTE,
    "+ the member's bias": ("member_bias",),
    "+ the song's appeal": ("song_appeal",),
    "+ the member's bias and the song's appeal": ("member_bias", "song_appeal"),
    "+ every hidden part": ("member_bias", "song_appeal", *TASTE, "source", "time"),
}
PARTS = ("train", "valid", "eval")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data"), help="the synthetic CSVs")
    parser.add_argument("--features", type=Path, default=Path("clean_data/features"))
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", type=Path, default=Path("bench"), help="folder of the report")
    return parser.parse_args(argv)


def scale_of(train_rows: int) -> tuple[str, synth.Scale]:
    """The synthetic scale (name, sizes) with this many train.csv rows."""
    for name, scale in synth.SCALES.items():
        if scale.train == train_rows:
            return name, scale
    sizes = ", ".join(f"{name} {s.train:,}" for name, s in synth.SCALES.items())
    raise UserError(
        f"train.csv has {train_rows:,} rows, no synthetic scale's ({sizes}): the hidden parts "
        "are known for the synthetic data only; `make data SCALE=...` first"
    )


def _column(data: Path, table: str, column: str) -> np.ndarray:
    """One column of a raw table, read by the stages' reader."""
    if not (data / table).exists():
        raise UserError(
            f"{data / table} not found: the oracle gap needs the synthetic data (make data)"
        )
    return read_table(data / table, tables.CONTRACT.tables[table], [column])[column].to_numpy()


def hidden_parts(
    truth: np.ndarray, scale: synth.Scale, settings: synth.Generate
) -> dict[str, np.ndarray]:
    """The logit parts of every train.csv row, drawn again from params.yaml's seed; refused
    unless they give the truth file's probabilities (the data is another draw)."""
    parts = synth.logit_parts(
        scale, settings.seed, settings.positive_rate, **settings.time_effects()
    )
    # The probability is a logistic function of the parts' sum: its logit must follow the sum.
    clipped = truth.clip(1e-6, 1 - 1e-6)
    drawn = np.corrcoef(np.log(clipped / (1 - clipped)), sum(parts.values()))[0, 1]
    if not drawn > 0.9999:
        raise UserError(
            f"{tables.TRUTH} is not what params.yaml's generate section (seed {settings.seed}) "
            "draws at this scale: `make data` with these params first"
        )
    return parts


def read_features(features: Path, target: np.ndarray) -> dict[str, pd.DataFrame]:
    """The train, valid and eval features; together, in this order, they must be train.csv's
    rows (their targets are compared)."""
    frames = {p: read_parquet(features / f"{p}.parquet").to_pandas() for p in PARTS}
    joined = np.concatenate([frames[p][model.TARGET].to_numpy() for p in PARTS])
    if len(joined) != len(target) or not np.array_equal(joined, target):
        raise UserError(
            f"{features} does not hold train.csv's rows in order: run the pipeline on this "
            "data first (`dvc repro evaluate`)"
        )
    return frames


def train_settings(path: str | Path) -> BaseModel:
    """params.yaml's train section (the xgb kind's settings and the seed are used)."""
    return params.section(path, "train", model.train_settings(PROBLEM.kinds))


def gaps(
    frames: dict[str, pd.DataFrame], parts: dict[str, np.ndarray], settings: Any
) -> list[dict[str, Any]]:
    """Eval ROC AUC of the xgb model (`settings`: the train section) trained with each case's
    true parts added to its features."""
    bounds = np.cumsum([0, *(len(frames[p]) for p in PARTS)])
    rows = {p: slice(bounds[i], bounds[i + 1]) for i, p in enumerate(PARTS)}
    y = {p: frames[p][model.TARGET].to_numpy() for p in PARTS}
    out = []
    for case, names in CASES.items():
        x = {
            p: frames[p]
            .drop(columns=model.TARGET)
            .assign(**{f"true_{n}": parts[n][rows[p]] for n in names})
            for p in PARTS
        }
        started = time.perf_counter()
        fitted = model.Model(KIND, KIND.build(settings.xgb, settings.seed))
        info = KIND.fit(fitted.estimator, x["train"], y["train"], (x["valid"], y["valid"]))
        auc = metrics.roc_auc(y["eval"], fitted.predict(x["eval"]))
        out.append(
            {
                "case": case,
                "parts": list(names),
                "roc_auc": round(auc, 4),
                "trees": info["best_iteration"] + 1 if "best_iteration" in info else None,
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
        log.info("%s: eval ROC AUC %.4f", case, auc)
    return out


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"Oracle gap at the {report['scale']} scale ({report['eval_rows']:,} eval rows): oracle "
        f"ROC AUC {report['oracle_roc_auc']:.4f}.",
        "",
        "| features | eval ROC AUC | gap to the oracle | trees | s |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in report["cases"]:
        lines.append(
            f"| {r['case']} | {r['roc_auc']:.4f} | {report['oracle_roc_auc'] - r['roc_auc']:.4f}"
            f" | {r['trees'] or ''} | {r['seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    truth = _column(args.data, tables.TRUTH, "target_probability")
    name, scale = scale_of(len(truth))
    parts = hidden_parts(truth, scale, params.section(args.params, "generate", synth.Generate))
    settings = train_settings(args.params)
    target = _column(args.data, tables.TRAIN, tables.CONTRACT.target)
    frames = read_features(args.features, target)
    eval_rows = len(frames["eval"])
    report = {
        "scale": name,
        "eval_rows": eval_rows,
        "oracle_roc_auc": round(
            metrics.roc_auc(frames["eval"][model.TARGET].to_numpy(), truth[-eval_rows:]), 4
        ),
        "model": KIND.name,
        "cases": gaps(frames, parts, settings),
    }
    write_json(report, args.out / f"oracle-gap-{name}.json")
    with atomic_path(args.out / f"oracle-gap-{name}.md") as tmp:
        tmp.write_text(markdown(report), encoding="utf-8")
    print(markdown(report), end="")


if __name__ == "__main__":
    run_main(main)
