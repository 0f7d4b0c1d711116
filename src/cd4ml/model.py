"""The pipeline's model: one of the problem's kinds (params.yaml's train.model), kept in a folder
with the kind's own file (no pickle) and model.json, what made it.

    models/model/model.ubj    the model, in its library's format (the kind names the file)
    models/model/model.json   kind, params, rows, what the fit reported, data version, engine
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import create_model

from cd4ml.io import UserError, atomic_dir, read_parquet, write_json
from cd4ml.params import Section, Seed
from cd4ml.problem import ModelKind

INFO = "model.json"
TARGET = "target"  # the last column of every features file (cd4ml.engine.FeatureOutput)


def train_settings(kinds: Mapping[str, ModelKind]) -> type[Section]:
    """The model of params.yaml's `train` section: which kind, the seed, and one sub-section of
    settings per kind (each kind's own Settings)."""
    return create_model(
        "Train",
        __base__=Section,
        model=(Literal[tuple(kinds)], ...),
        seed=(Seed, ...),
        **{name: (kind.Settings, ...) for name, kind in kinds.items()},
    )


@dataclass
class Model:
    """A fitted model of one kind."""

    kind: ModelKind
    estimator: Any

    def predict(self, x: pd.DataFrame) -> np.ndarray:
        """P(target = 1) of each row."""
        return self.kind.predict(self.estimator, x)

    def importances(self, names: list[str]) -> dict[str, float]:
        return self.kind.importances(self.estimator, names)


def build(kinds: Mapping[str, ModelKind], settings: Any) -> Model:
    """An unfitted model of the kind `settings.model`, with that kind's settings and the seed."""
    kind = kinds[settings.model]
    return Model(kind, kind.build(getattr(settings, settings.model), settings.seed))


def fit_baseline(
    kinds: Mapping[str, ModelKind],
    train: Any,
    name: str,
    features: list[str],
    fit_rows: tuple[pd.DataFrame, np.ndarray],
    valid: tuple[pd.DataFrame, np.ndarray],
    where: str | Path = "params.yaml",
    *,
    max_rows: int | None = None,
) -> tuple[Model, list[str]]:
    """The simple baseline (evaluate.baseline_kind), fitted as train fits a model of that kind
    (its train.<kind> settings and train.seed) on `features` of the rows ([]: every feature),
    and the features it uses. Beyond `max_rows` fit rows it sees a sample of that many, and the
    same share of the valid rows (drawn with train.seed, kept in order). A kind or feature the
    problem lacks is one line."""
    if name not in kinds:
        raise UserError(
            f"{where}: evaluate.baseline_kind {name!r} is not one of the problem's model kinds "
            f"{sorted(kinds)}"
        )
    columns = list(fit_rows[0].columns)
    for wanted in features:
        if wanted not in columns:
            close = difflib.get_close_matches(wanted, columns, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise UserError(
                f"{where}: evaluate.baseline_features names {wanted!r}, not a feature of the "
                f"model ({hint}it has {len(columns)}: {', '.join(columns)}); fix the name, or "
                "[] for every feature"
            )
    chosen = list(features) or columns
    kind = kinds[name]
    baseline = Model(kind, kind.build(getattr(train, name), train.seed))
    if max_rows is not None and len(fit_rows[1]) > max_rows:
        rng = np.random.default_rng(train.seed)
        share = max_rows / len(fit_rows[1])
        fit_rows, valid = (_sample(rows, share, rng) for rows in (fit_rows, valid))
    x, y = fit_rows
    kind.fit(baseline.estimator, x[chosen], y, (valid[0][chosen], valid[1]))
    return baseline, chosen


def _sample(
    rows: tuple[pd.DataFrame, np.ndarray], share: float, rng: np.random.Generator
) -> tuple[pd.DataFrame, np.ndarray]:
    """`share` of the rows, drawn without replacement, in their order."""
    x, y = rows
    keep = np.sort(rng.choice(len(y), round(len(y) * share), replace=False))
    return x.iloc[keep].reset_index(drop=True), y[keep]


def save(folder: Path, model: Model, info: dict[str, Any]) -> None:
    """The model folder, swapped in whole: the kind's file and model.json (`info` + the kind)."""
    with atomic_dir(folder) as tmp:
        model.kind.save(model.estimator, tmp / model.kind.file)
        write_json({"kind": model.kind.name, "file": model.kind.file, **info}, tmp / INFO)


def read_info(folder: Path) -> dict[str, Any]:
    """model.json of a model folder."""
    path = folder / INFO
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: not found; run `dvc repro train`") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not valid JSON ({err}); rerun `dvc repro -f train`") from None
    if not isinstance(info, dict) or "kind" not in info:
        raise UserError(f"{path}: names no model kind; rerun `dvc repro -f train`")
    return info


def kind_of(kinds: Mapping[str, ModelKind], name: Any, where: Path) -> ModelKind:
    """The kind `name`, or one line naming the file that asks for an unknown one."""
    if name not in kinds:
        raise UserError(
            f"{where}: model kind {name!r} is not one of the problem's {sorted(kinds)}"
        )
    return kinds[name]


def load(folder: Path, kinds: Mapping[str, ModelKind]) -> Model:
    """The model of a folder, loaded by its kind (which checks what it loads)."""
    kind = kind_of(kinds, read_info(folder).get("kind"), folder / INFO)
    path = folder / kind.file
    if not path.exists():
        raise UserError(f"{path}: model not found; run `dvc repro train`")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: model file is empty (0 bytes); rerun `dvc repro -f train`")
    return Model(kind, kind.load(path))


def read_features(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """A features file: the features (every column but the target) and the target."""
    frame = read_parquet(path).to_pandas()
    return frame.drop(columns=[TARGET]), frame[TARGET].to_numpy()
