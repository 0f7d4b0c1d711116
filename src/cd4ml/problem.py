"""The one interface between the loop and the problem it delivers.

The loop (this package) knows nothing of any data set or model. A problem is a Python package
that builds one `Problem` and names it `PROBLEM`; params.yaml's `problem:` names the package,
cd4ml.params.problem() reads that name, and `load` (here, and only here) imports it.
`src/kkbox` is the example; docs/adapt.md shows how to write your own, and tests/toy is a
second one that goes through the same loop.

What the loop asks of a problem, by step:
- data: `contract` (its raw tables, their columns and rules: cd4ml.contract), `synthesize`
  (sample data for `make data`, at one of `scales`) and `download` (its real files);
- features: `fit` (the featurizer, fitted on the training part, and the features of every
  part), `load_featurizer` (a fitted one, back from its files), `plan` (the same fit in passes
  of mergeable statistics, for the Dask engine; None if it has none), `slices` (named groups of
  eval rows the evaluation reports apart) and, optional, `slice_columns` (categorical columns of
  the Row whose every value is a slice too; the gate compares the models on all of them);
- models: `kinds`, each a `ModelKind`;
- serving: `Row`, the pydantic model of one raw input row (the request schema), `flags`,
  the names of the per-row facts its featurizer reports (e.g. an unknown member), and
  `private`, the Row's fields that identify a person (the prediction log keeps only their
  keyed hashes: cd4ml.predlog);
- settings: `sections`, the params.yaml sections it reads (pydantic models).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pydantic import BaseModel

from cd4ml.io import UserError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    from cd4ml.contract import Contract


@dataclass(frozen=True)
class Features:
    """What a featurizer makes of raw rows: the model's features (one row each, in order) and
    the problem's flags, one boolean per row each (e.g. `unknown_member`)."""

    x: pd.DataFrame
    flags: dict[str, np.ndarray]


@runtime_checkable
class Featurizer(Protocol):
    """A fitted featurizer: raw input rows (an Arrow table of the Row's columns) in, features
    out. The same code made the training features, so serving and training agree."""

    def transform(self, rows: pa.Table) -> Features: ...

    def flags(self, rows: pa.Table) -> dict[str, np.ndarray]:
        """The flags of raw rows without their features (what transform's flags are)."""

    def warm_up(self) -> None:
        """Build whatever makes the first request fast (a service calls it before ready)."""

    def example(self) -> dict[str, Any]:
        """One input row it knows: what a service scores before it says it is ready."""


@runtime_checkable
class ModelKind(Protocol):
    """One kind of model, everything the loop does with it in one place. Its file is in the
    library's own format (no pickle) and `load` trusts nothing it did not expect."""

    name: str
    file: str  # the model's file name in the model folder and the bundle
    library: str  # the module `load` needs: imported while a bundle's hashes are checked
    Settings: type[BaseModel]  # its section of params.yaml: train.<name>

    def build(self, settings: Any, seed: int) -> Any: ...

    def fit(self, model: Any, x: pd.DataFrame, y: np.ndarray, valid: tuple) -> dict[str, Any]:
        """Fit on (x, y); `valid` (x, y) are the early-stopping rows. Returns what to record."""

    def save(self, model: Any, path: Path) -> None: ...

    def load(self, path: Path) -> Any: ...

    def predict(self, model: Any, x: pd.DataFrame) -> np.ndarray:
        """P(target = 1) of each row."""

    def importances(self, model: Any, names: list[str]) -> dict[str, float]:
        """Each feature's share of the model's importance (they sum to 1)."""


class FeatureOutput(Protocol):
    """Where a problem's `fit` puts what it makes (cd4ml.engine writes it: Parquet files on
    background threads, in a folder swapped in whole)."""

    featurizer: Path  # the folder the fitted featurizer's files go to

    def features(self, part: str, x: pd.DataFrame, target: np.ndarray) -> None:
        """The features of one part (train, valid, eval) and their target."""

    def write(self, table: pa.Table, path: Path) -> None:
        """One table of the featurizer, a path under `featurizer`, written in the background."""


class Plan(Protocol):
    """A featurizer's fit as passes of mergeable statistics (Problem.plan): what the Dask
    engine runs. Every method but `save` runs on the workers; `part` is one of train, valid,
    eval and `start` a partition's first row in its part."""

    side_files: tuple[str, ...]  # files of data/ the workers need (read once, on one worker)
    columns: tuple[str, ...]  # the columns of the split's parts a partition reads
    dictionary: tuple[str, ...]  # those read dictionary-encoded
    passes: int

    def side(self, folder: Path) -> Any:
        """The side tables (e.g. members and songs) from the raw files in `folder`."""

    def prepare(self, rows: pd.DataFrame, side: Any) -> pd.DataFrame:
        """A partition's rows made ready (joined): done once, kept on the worker."""

    def partial(self, step: int, part: str, frame: pd.DataFrame, start: int, state: Any) -> Any:
        """One partition's statistics in pass `step` (train and valid partitions only)."""

    def merge(self, step: int, *partials: Any) -> Any:
        """Partials added up (associative: they merge in a tree)."""

    def finish(self, step: int, merged: Any, state: Any) -> Any:
        """The state the next pass, or the transform, uses."""

    def transform(
        self, part: str, frame: pd.DataFrame, start: int, state: Any
    ) -> tuple[pd.DataFrame, np.ndarray]:
        """A partition's features and target."""

    def save(self, side: Any, state: Any, folder: Path) -> None:
        """The fitted featurizer's files, into `folder` (on the client)."""


@runtime_checkable
class Problem(Protocol):
    """A problem the loop can deliver (see the module's docstring)."""

    name: str  # the model's name: the artifact in dvc.yaml, the registry, the service's title
    description: str  # one line: what the predicted probability means
    contract: Contract
    Row: type[BaseModel]
    flags: tuple[str, ...]
    private: tuple[str, ...]  # Row fields that identify a person: logged as keyed hashes
    kinds: Mapping[str, ModelKind]
    sections: Mapping[str, type[BaseModel]]
    scales: tuple[str, ...]

    def synthesize(self, out: Path, scale: str, settings: Any) -> None:
        """Sample data of one scale into `out`; `settings`: its section `generate`, if any."""

    def download(self, out: Path) -> None: ...

    def fit(
        self, data: Path, parts: Mapping[str, Path], settings: Any, out: FeatureOutput
    ) -> None:
        """Fit the featurizer on the split's train part (`parts`: train, valid, eval Parquet
        files of examples) with the raw tables of `data`; give `out` the features of every part
        and the fitted featurizer. `settings`: its section `preprocess`, if any."""

    def plan(self, settings: Any) -> Plan | None:
        """The same fit as passes of mergeable statistics (the Dask engine's), or None."""

    def load_featurizer(self, folder: Path) -> Featurizer: ...

    def slices(self, x: pd.DataFrame) -> dict[str, np.ndarray]: ...

    # Optional, read with getattr: slice_columns: tuple[str, ...] (the gate; default ()) and
    # feature_groups: Mapping[str, tuple[str, ...]] (make ablation; default: name prefixes)


def load(name: str, where: str = "params.yaml") -> Problem:
    """The problem of the package `name` (its PROBLEM): the one place the loop imports one."""
    if not isinstance(name, str) or not name:
        raise UserError(f"{where}: problem must name a Python package (e.g. kkbox), got {name!r}")
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as err:
        raise UserError(
            f"{where}: problem {name!r} cannot be imported ({err}); name an installed package "
            "or one under src/ (docs/adapt.md)"
        ) from None
    found = getattr(module, "PROBLEM", None)
    if found is None:
        raise UserError(f"{where}: problem package {name!r} defines no PROBLEM (docs/adapt.md)")
    missing = [m for m in _MEMBERS if not hasattr(found, m)]
    if missing:
        raise UserError(f"{where}: {name}.PROBLEM lacks {missing} of the Problem interface")
    return found


_MEMBERS = (
    *("name", "description", "contract", "Row", "flags", "private", "kinds", "sections"),
    "scales",
    *("synthesize", "download", "fit", "plan", "load_featurizer", "slices"),
)


def module_of(problem: Problem) -> str:
    """The module that defines the problem's class (its package's, for a problem defined in
    the package's __init__.py): what a bundle records and a Dask worker must import."""
    return type(problem).__module__


def discover_kinds(package: str) -> dict[str, ModelKind]:
    """The model kinds of a package: every module in it that defines KIND, by KIND.name. A new
    kind is a new module there (and its name in params.yaml)."""
    found = {}
    pack = importlib.import_module(package)
    for info in pkgutil.iter_modules(pack.__path__):
        kind = getattr(importlib.import_module(f"{package}.{info.name}"), "KIND", None)
        if kind is not None:
            found[kind.name] = kind
    return dict(sorted(found.items()))
