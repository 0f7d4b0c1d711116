"""Stage bundle: package the model and its featurizer as the release bundle, load it back (every
hash verified) and prove it scores the raw eval rows exactly as the pipeline did."""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from kkbox import bundle, featurizer, model, params, provenance
from kkbox.features import FEATURES, SOURCE
from kkbox.io import UserError, atomic_dir, read_parquet, run_main

log = logging.getLogger("bundle")

# The params sections that shape the model (dvc.yaml declares the same ones).
MODEL_PARAMS = ("split", "preprocess", "train")
# Same model, same features: only float rounding may differ.
MAX_DIFFERENCE = 1e-6


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, required=True, help="the pipeline's model file")
    parser.add_argument("--featurizer", type=Path, required=True, help="preprocess's featurizer")
    parser.add_argument("--features", type=Path, required=True, help="holds eval.parquet")
    parser.add_argument(
        "--split", type=Path, required=True, help="the raw train and eval parts (Parquet)"
    )
    parser.add_argument("--metrics", type=Path, required=True, help="the eval metrics")
    parser.add_argument("--out", type=Path, required=True, help="the bundle folder")
    parser.add_argument("--params", default="params.yaml")
    return parser.parse_args(argv)


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: not found; run `dvc repro` up to this stage") from None
    except ValueError as err:
        raise UserError(f"{path}: not valid JSON ({err}); rerun the stage that makes it") from None


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    settings = params.load(args.params)
    estimator = model.load(args.model)
    trained = _json(args.model.with_name("model.json"))
    about = {
        "data_version": trained.get("data_version"),
        "git": provenance.git_commit(),
        "params": {name: asdict(getattr(settings, name)) for name in MODEL_PARAMS},
        "metrics": _json(args.metrics),
        "training": {k: trained.get(k) for k in ("n_train_rows", "n_valid_rows", "fit")},
        "libraries": provenance.library_versions((*provenance.LIBRARIES, "skops")),
        "python": provenance.python_version(),
    }
    raw = read_parquet(args.split / "eval.parquet")
    expected = model.predict_proba(
        estimator, read_parquet(args.features / "eval.parquet").to_pandas()[FEATURES]
    )
    train_plays = read_parquet(args.split / "train.parquet", columns=[*SOURCE, "target"])
    unknown = [k < 0 for k in featurizer.load(args.featurizer).keys(bundle.plays(raw))]
    profile = bundle.training_profile(train_plays, unknown, expected)
    with atomic_dir(args.out) as tmp:
        manifest = bundle.write(
            tmp, estimator, settings.train.model, args.featurizer, about, profile
        )
        started = time.perf_counter()
        scorer = bundle.load(tmp)
        loaded = time.perf_counter() - started
        got = scorer.predict_proba(raw)
        difference = float(np.max(np.abs(got - expected))) if len(got) else 0.0
        if len(got) != len(expected) or difference > MAX_DIFFERENCE:
            raise UserError(
                f"{args.out}: the bundle scores the {len(expected)} eval rows differently from "
                f"the pipeline (max difference {difference:.2e} > {MAX_DIFFERENCE:g}): the "
                "featurizer and the features disagree; rerun `dvc repro -f preprocess`"
            )
    size = sum(entry["bytes"] for entry in manifest["files"].values())
    log.info(
        "wrote %s: %d files, %.1f MB, loads and verifies in %.2f s; scores the %d raw eval "
        "rows as the pipeline did (max difference %.1e)",
        args.out,
        len(manifest["files"]) + 1,
        size / 1e6,
        loaded,
        len(got),
        difference,
    )


if __name__ == "__main__":
    run_main(main)
