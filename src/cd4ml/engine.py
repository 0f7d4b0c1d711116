"""Where preprocess and train run: in this process (local) or on a Dask cluster (dask).

The engine is where a stage runs, not what it computes: both give the same features, byte for
byte, and an ordinary model of its kind (tests/e2e/test_dask_engine.py compares them). So it is
no parameter of the pipeline but the environment's choice: CD4ML_ENGINE=local|dask, dask by
default when DASK_SCHEDULER_ADDRESS names a cluster (cd4ml.cluster). model.json records which
ran. DVC reruns nothing because the engine changed: `make repro ENGINE=dask` forces preprocess
and train to run there.

On Dask, preprocess runs the problem's `Plan`: each part's partitions are read and prepared
(joined) once on a worker and kept there; each pass maps them to partial statistics, merges
those in a tree on the workers and finishes them into the state that the next pass, and then
every partition's transform, uses. The features stream back into the workspace. Train runs
the model kind's `fit_on_cluster` (XGBoost: xgboost.dask).
"""

from __future__ import annotations

import functools
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cd4ml import cluster, health
from cd4ml import problem as problems
from cd4ml.io import ParquetFolder, UserError, parquet_folder
from cd4ml.model import TARGET, Model, read_features
from cd4ml.problem import Plan, Problem
from cd4ml.split import PARTS

log = logging.getLogger(__name__)

ENGINE = "CD4ML_ENGINE"


def name() -> str:
    """The engine the environment chooses (see the module's docstring)."""
    chosen = os.environ.get(ENGINE) or ("dask" if os.environ.get(cluster.SCHEDULER) else "local")
    if chosen not in ("local", "dask"):
        raise UserError(f"{ENGINE}={chosen!r}: use local or dask")
    return chosen


def _packages(problem: Problem) -> tuple[str, str]:
    """The code the workers must share with this checkout: the loop's and the problem's."""
    return ("cd4ml", problems.module_of(problem))


class FeatureOutput:
    """Where a problem's fit puts what it makes (cd4ml.problem.FeatureOutput): the features of
    each part (train, valid, eval: `<part>.parquet`, the target as the last column) and the
    fitted featurizer's files (under `featurizer`), each written on a background thread while
    the fit goes on."""

    def __init__(self, folder: ParquetFolder) -> None:
        self._folder = folder
        self.featurizer = folder.path / "featurizer"

    @staticmethod
    def table(x: pd.DataFrame, target: np.ndarray) -> pa.Table:
        """Features and target as one Arrow table."""
        return pa.Table.from_pandas(x, preserve_index=False).append_column(
            TARGET, pa.array(target)
        )

    def features(self, part: str, x: pd.DataFrame, target: np.ndarray) -> None:
        """Write one part's features (lz4: the model stages read them, and it decompresses
        fastest)."""
        log.info("%s: %d rows x %d features", part, len(x), x.shape[1])
        self._folder.write(self.table(x, target), f"{part}.parquet", "lz4")

    def write(self, table: pa.Table, path: Path) -> None:
        """Write one file of the featurizer (a path under `featurizer`)."""
        self._folder.write(table, path)


def featurize(problem: Problem, data: Path, split: Path, settings: Any, out: Path) -> None:
    """Stage preprocess: the problem's fit on the split's parts, on the chosen engine; the
    output folder is swapped in whole, or not at all."""
    parts = {part: split / f"{part}.parquet" for part in PARTS}
    with parquet_folder(out) as folder:
        if name() == "local":
            problem.fit(data, parts, settings, FeatureOutput(folder))
            return
        plan = problem.plan(settings)
        if plan is None:
            raise UserError(
                f"{ENGINE} is dask but the problem {problem.name} has no plan for it "
                "(Problem.plan); run with the local engine"
            )
        _featurize_on_cluster(plan, data, parts, folder.path, _packages(problem))


def _side(plan: Plan, urls: dict[str, str], options: dict[str, Any]) -> Any:
    """On a worker: the plan's side tables, from the raw files in the scratch space."""
    import fsspec

    with tempfile.TemporaryDirectory(prefix="cd4ml-side-") as tmp:
        for file, url in urls.items():
            fsspec.core.url_to_fs(url, **options)[0].get_file(url, str(Path(tmp) / file))
        return plan.side(Path(tmp))


def _rows(piece: cluster.Piece, plan: Plan, options: dict[str, Any]) -> pd.DataFrame:
    """On a worker: one piece of a part's rows."""
    columns, dictionary = list(plan.columns), list(plan.dictionary)
    return cluster.read_piece(piece, options, columns, dictionary).to_pandas()


def _features(
    plan: Plan,
    part: str,
    frame: pd.DataFrame,
    start: int,
    state: Any,
    url: str,
    options: dict[str, Any],
) -> str | None:
    """On a worker: one partition's features, written to `url` (None: no rows)."""
    if not len(frame):
        return None
    table = FeatureOutput.table(*plan.transform(part, frame, start, state))
    return cluster.write_piece(table, url, options)


def _tree(parts: list[Any], merge: Any, fan_in: int = 8) -> Any:
    """Partition results merged on the workers in a tree of `fan_in`-way merges."""
    import dask

    while len(parts) > 1:
        parts = [dask.delayed(merge)(*parts[i : i + fan_in]) for i in range(0, len(parts), fan_in)]
    return parts[0]


def _featurize_on_cluster(
    plan: Plan, data: Path, parts: dict[str, Path], out: Path, packages: tuple[str, ...]
) -> None:
    import dask

    with cluster.connect(packages) as (client, space):
        options, run = space.options, space.run_prefix()
        workers = len(client.scheduler_info()["workers"])
        files = space.stage(*(data / file for file in plan.side_files))
        urls = dict(zip(PARTS, space.stage(*parts.values()), strict=True))
        side = client.submit(_side, plan, dict(zip(plan.side_files, files, strict=True)), options)
        read = functools.partial(_rows, plan=plan, options=options)
        frames, starts, meta = {}, {}, None
        for part, url in urls.items():
            rows, cuts = cluster.frame(space, url, 2 * workers, read)
            if meta is None:  # the prepared columns: a partition of no rows, on a worker
                meta = client.submit(plan.prepare, rows._meta, side).result()
            # Each partition is read and prepared on a worker once, and kept there.
            prepared = client.persist(rows.map_partitions(plan.prepare, side, meta=meta))
            frames[part], starts[part] = prepared.to_delayed(), [piece.start for piece in cuts]
        fitted = [
            (part, frame, start)
            for part in ("train", "valid")
            for frame, start in zip(frames[part], starts[part], strict=True)
        ]
        state = None
        for step in range(plan.passes):
            partials = [dask.delayed(plan.partial)(step, *item, state) for item in fitted]
            merged = _tree(partials, functools.partial(plan.merge, step))
            state = client.compute(dask.delayed(plan.finish)(step, merged, state))
        written = {}
        for part in PARTS:
            jobs = [
                dask.delayed(_features)(
                    plan, part, frame, start, state, f"{run}/{part}/{i:05d}.parquet", options
                )
                for i, (frame, start) in enumerate(zip(frames[part], starts[part], strict=True))
            ]
            written[part] = client.gather(client.compute(jobs))
        try:
            for part, found in written.items():
                got = cluster.gather_parquet(
                    space, [u for u in found if u], out / f"{part}.parquet", "lz4"
                )
                log.info("%s: %d rows from %d partitions", part, got, len(found))
            plan.save(side.result(), state.result(), out / "featurizer")
        finally:
            space.remove(run)


def fit(problem: Problem, model: Model, features: Path) -> tuple[dict[str, Any], int, int]:
    """Fit the model on the train features, stopping early on the valid ones, on the chosen
    engine: what the fit reported, and the rows of each."""
    if name() == "dask":
        return _fit_on_cluster(problem, model, features)
    x, y = read_features(features / "train.parquet")
    valid = read_features(features / "valid.parquet")
    for part, frame in (("train", x), ("valid", valid[0])):
        _healthy(features / f"{part}.parquet", health.infinite_feature(frame))
    log.info("%d training rows, %d early-stopping rows", len(x), len(valid[1]))
    return model.kind.fit(model.estimator, x, y, valid), len(x), len(valid[1])


def _healthy(path: Path, found: tuple[int, str, float] | None) -> None:
    """Refuse the features file where health.infinite_feature found an infinity, in one line
    (a NaN is a missing value: see cd4ml.health)."""
    if found is not None:
        raise UserError(
            f"{path}: {health.Unhealthy(*found)}: the problem's featurizer divides by zero or "
            "overflows; fix it and rerun `dvc repro preprocess`"
        )


def _read_features(piece: cluster.Piece, options: dict, columns: Sequence[str]) -> pd.DataFrame:
    return cluster.read_piece(piece, options, list(columns)).to_pandas()


def _fit_on_cluster(
    problem: Problem, model: Model, features: Path
) -> tuple[dict[str, Any], int, int]:
    """The kind's fit_on_cluster: the workers read the features from the scratch space."""
    fit_on_cluster = getattr(model.kind, "fit_on_cluster", None)
    if fit_on_cluster is None:
        raise UserError(
            f"{ENGINE} is dask but model kind {model.kind.name} has no fit_on_cluster; set "
            f"{ENGINE}=local or train a kind that has one (xgb)"
        )
    columns = pq.read_schema(features / "train.parquet").names
    names = [c for c in columns if c != TARGET]
    import dask

    with cluster.connect(_packages(problem)) as (client, space):
        workers = len(client.scheduler_info()["workers"])
        read = functools.partial(_read_features, options=space.options, columns=columns)
        frames, pieces = [], []
        urls = space.stage(*(features / f"{part}.parquet" for part in ("train", "valid")))
        for part, url in zip(("train", "valid"), urls, strict=True):
            frame, cuts = cluster.frame(space, url, 2 * workers, read)
            frames.append(frame)
            pieces.append(cuts)
            log.info("%s: %d rows in %d partitions", part, cuts[-1].stop, len(cuts))
        train, valid = (client.persist(f) for f in frames)
        for part, frame, cuts in zip(("train", "valid"), (train, valid), pieces, strict=True):
            found = client.compute(
                [dask.delayed(health.infinite_feature)(p) for p in frame[names].to_delayed()]
            )
            for cut, first in zip(cuts, client.gather(found), strict=True):
                if first is not None:  # a row of the partition: of the file, from its start
                    _healthy(features / f"{part}.parquet", (cut.start + first[0], *first[1:]))
        info = fit_on_cluster(
            model.estimator, client, train[names], train[TARGET], (valid[names], valid[TARGET])
        )
        return info, len(train), len(valid)
