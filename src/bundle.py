"""Stage bundle: package the model and the problem's featurizer as the release bundle, load it
back (every hash verified) and prove it scores the raw eval rows exactly as the pipeline did.

The manifest records the build: a content hash of every stage's code and every parameter the
pipeline depends on (cd4ml.provenance), not a git commit, so the same code builds the same
bundle on every machine and in every commit."""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from cd4ml import bundle, health, model, params, provenance
from cd4ml.io import UserError, atomic_dir, read_parquet, run_main
from cd4ml.model import read_features
from cd4ml.problem import Problem

log = logging.getLogger("bundle")

# Same model, same features: only float rounding may differ.
MAX_DIFFERENCE = 1e-6


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, required=True, help="the model folder")
    parser.add_argument("--features", type=Path, required=True, help="features and featurizer")
    parser.add_argument("--split", type=Path, required=True, help="the split's raw parts")
    parser.add_argument("--metrics", type=Path, required=True, help="the eval metrics")
    parser.add_argument("--out", type=Path, required=True, help="the bundle folder")
    parser.add_argument("--pipeline", type=Path, default=Path("dvc.yaml"))
    parser.add_argument("--params", default="params.yaml")
    return parser.parse_args(argv)


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: not found; run `dvc repro` up to this stage") from None
    except ValueError as err:
        raise UserError(f"{path}: not valid JSON ({err}); rerun the stage that makes it") from None


def _profile(
    problem: Problem, split: Path, featurizer: Path, raw: pa.Table, expected: np.ndarray
) -> dict:
    """profile.json (see bundle.training_profile); what it reads is freed on return."""
    flags = problem.load_featurizer(featurizer).flags(
        bundle.rows_table(raw, bundle.input_fields(problem.Row))
    )
    # The training rows' profile needs their categorical fields and target only.
    columns = [*bundle.categorical_inputs(problem), problem.contract.target]
    train = pa.concat_tables(
        read_parquet(split / f"{part}.parquet", columns=columns) for part in ("train", "valid")
    )
    return bundle.training_profile(problem, train, flags, expected)


def _healthy(path: Path, x: pd.DataFrame, fitted: model.Model, folder: Path) -> np.ndarray:
    """The model's probabilities of the eval features `x`, once both are numerically healthy
    (cd4ml.health: no infinite feature, every probability in [0, 1])."""
    try:
        health.check(x)
        p = fitted.predict(x)
        health.check(p=p)
    except health.Unhealthy as err:
        raise UserError(
            f"{path}: {err}; the model {folder} cannot be released: check the featurizer "
            "and the model's training"
        ) from None
    return p


def _data_end(problem: Problem, split: Path) -> dict[str, str] | None:
    """The manifest's data_end (bundle.data_end): the latest time of the training rows (train
    and valid parts); None when the contract names no time column."""
    column = problem.contract.time
    if column is None:
        return None
    times = pa.chunked_array(
        chunk
        for part in ("train", "valid")
        for chunk in read_parquet(split / f"{part}.parquet", columns=[column])[column].chunks
    )
    return bundle.data_end(times, column)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    problem = params.problem(args.params)
    fitted = model.load(args.model, problem.kinds)
    trained = model.read_info(args.model)
    root = args.pipeline.resolve().parent
    about = {
        "build": provenance.build(root, args.pipeline, params.read(args.params)),
        "data_version": trained.get("data_version"),
        "data_end": _data_end(problem, args.split),
        "metrics": _json(args.metrics),
        "training": {k: trained.get(k) for k in ("n_train_rows", "n_valid_rows", "fit", "engine")},
        "libraries": provenance.library_versions(),
        "python": provenance.python_version(),
    }
    raw = read_parquet(args.split / "eval.parquet")
    x, _ = read_features(args.features / "eval.parquet")
    columns = list(x.columns)
    expected = _healthy(args.features / "eval.parquet", x, fitted, args.model)
    del x, fitted  # the bundle loads its own below: not two models and their features at once
    featurizer = args.features / "featurizer"
    profile = _profile(problem, args.split, featurizer, raw, expected)
    with atomic_dir(args.out) as tmp:
        manifest = bundle.write(tmp, problem, args.model, featurizer, columns, about, profile)
        started = time.perf_counter()
        scorer = bundle.load(tmp, problem)
        loaded = time.perf_counter() - started
        try:
            got = scorer.predict_proba(raw)
        except health.Unhealthy as err:
            raise UserError(
                f"{args.out}: the new bundle cannot score the raw eval {err}"
            ) from None
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
        "rows as the pipeline did (max difference %.1e); build %s",
        args.out,
        len(manifest["files"]) + 1,
        size / 1e6,
        loaded,
        len(got),
        difference,
        about["build"]["sha256"][:12],
    )


if __name__ == "__main__":
    run_main(main)
