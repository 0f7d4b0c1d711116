"""Retraining outside the pipeline, for the tools that measure the model (tools.staleness,
tools.ablation): the examples read as the split stage reads them, featurised by the problem's
fit on the engine the environment chooses (what the preprocess stage runs) and a model of
params.yaml's train.model kind built and fitted as the train stage does, all in a work folder."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from cd4ml import engine, metrics, model, params
from cd4ml.io import REPEATED_IDS_PARQUET, UserError, parquet_folder
from cd4ml.problem import Problem
from cd4ml.reading import read_table

log = logging.getLogger(__name__)


def read_examples(data: Path, problem: Problem) -> tuple[pa.Table, pa.ChunkedArray]:
    """The problem's labelled examples (in time order, as the split stage takes them) and their
    true probability (all null where the data has none)."""
    contract = problem.contract
    if not data.is_dir():
        raise UserError(f"{data}: no such data folder; make one with `make data SCALE=small`")
    path = data / contract.examples
    if not path.exists():
        raise UserError(f"{path} not found: {data} holds no {problem.name} examples (make data)")
    examples = read_table(path, contract.tables[contract.examples])
    truth_path = data / contract.truth if contract.truth else None
    if truth_path is not None and truth_path.exists():
        truth = read_table(truth_path, contract.tables[contract.truth]).column(0)
        if len(truth) != examples.num_rows:
            raise UserError(
                f"{truth_path}: {len(truth):,} rows for the {examples.num_rows:,} of {path}: "
                "not the same draw; make the data again"
            )
    else:
        truth = pa.chunked_array([pa.nulls(examples.num_rows, pa.float64())])
    log.info("%s: %d examples", path, examples.num_rows)
    return examples, truth


def featurize(
    problem: Problem, data: Path, parts: dict[str, pa.Table], settings_path: str | Path, work: Path
) -> float:
    """Write the parts (train, valid, eval) as the split stage does and featurise them with the
    problem's fit (params.yaml's preprocess) into `work`/features; the seconds it took."""
    with parquet_folder(work / "split", workers=3) as out:
        for part in ("train", "valid", "eval"):
            out.write(parts[part], f"{part}.parquet", "zstd", **REPEATED_IDS_PARQUET)
    settings = params.problem_section(problem, "preprocess", settings_path)
    started = time.perf_counter()
    engine.featurize(problem, data, work / "split", settings, work / "features")
    return time.perf_counter() - started


def train_settings(problem: Problem, settings_path: str | Path) -> Any:
    """params.yaml's train section: the kind, its settings and the seed."""
    return params.section(settings_path, "train", model.train_settings(problem.kinds))


def fit(
    problem: Problem, settings: Any, features: Path
) -> tuple[model.Model, dict[str, Any], float]:
    """A model of the train section's kind fitted on `features` (train, stopped early on valid)
    as the train stage fits it: the model, what the fit reported and the seconds it took."""
    built = model.build(problem.kinds, settings)
    started = time.perf_counter()
    info, _, _ = engine.fit(problem, built, features)
    return built, info, time.perf_counter() - started


def fit_frames(
    problem: Problem, settings: Any, train: tuple, valid: tuple
) -> tuple[model.Model, dict[str, Any], float]:
    """The same fit on features in memory ((x, y) each): the kind's fit, as engine.fit calls it
    on the local engine."""
    built = model.build(problem.kinds, settings)
    started = time.perf_counter()
    info = built.kind.fit(built.estimator, *train, valid)
    return built, info, time.perf_counter() - started


def model_bytes(fitted: model.Model, work: Path) -> int:
    """Bytes of the model's file in its kind's own format (what a bundle carries)."""
    path = work / fitted.kind.file
    fitted.kind.save(fitted.estimator, path)
    size = path.stat().st_size
    path.unlink()
    return size


def folder_bytes(folder: Path) -> int:
    """Bytes of every file under a folder."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def auc_or_none(y: np.ndarray, p: np.ndarray) -> float | None:
    """ROC AUC, or None where the rows lack a class."""
    return metrics.roc_auc(y, p) if len(np.unique(y)) == 2 else None
