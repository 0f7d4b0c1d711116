"""The release bundle: a folder that scores raw input rows, with nothing loaded through pickle.

    model.ubj | model.skops   the model, in its kind's own format (cd4ml.model)
    featurizer/               the problem's fitted featurizer, as preprocess wrote it
    schema.json               the input row's fields (the problem's Row), the features in order
    profile.json              the training rows' profile, for monitoring (cd4ml.validation's)
    manifest.json             sha256 of every other file; the problem, the model kind, the
                              build (a content hash of the code and params that made it), data
                              version and end date, eval metrics, libraries
    model.sig                 a release's signature of all the above (cd4ml.signing); none in a
                              local build

`load(path, problem)` checks every hash before it reads anything and returns a Scorer.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import logging
import shutil
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import NoneType, UnionType
from typing import Any, Union, get_args, get_origin

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel

from cd4ml import health, signing, validation
from cd4ml import model as models
from cd4ml import problem as problems
from cd4ml.contract import is_yyyymmdd
from cd4ml.io import UserError, sha256, write_json
from cd4ml.problem import Featurizer, Problem

log = logging.getLogger(__name__)

FORMAT = 2
MANIFEST = "manifest.json"
SCHEMA = "schema.json"
PROFILE = "profile.json"
FEATURIZER = "featurizer"
ROWS = "rows"  # the profile's one table: the input rows a model scores

_ARROW = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}


@dataclass(frozen=True)
class Field:
    """One field of an input row: its Arrow type, and whether it may be null."""

    name: str
    type: pa.DataType
    nullable: bool


def input_fields(row: type[BaseModel]) -> list[Field]:
    """The fields of a problem's Row model, in order (str, int, float, bool, or one of them
    or None)."""
    out = []
    for name, spec in row.model_fields.items():
        kind, args = spec.annotation, get_args(spec.annotation)
        nullable = get_origin(kind) in (Union, UnionType) and NoneType in args
        if nullable:
            kind = next(a for a in args if a is not NoneType)
        if kind not in _ARROW:
            raise TypeError(f"{row.__name__}.{name}: {kind} is no input type; use {list(_ARROW)}")
        out.append(Field(name, _ARROW[kind], nullable))
    return out


def schema(problem: Problem, features: list[str]) -> dict:
    """What a caller sends and what the model sees."""
    return {
        "input": {
            f.name: {"type": str(f.type), "required": True, "nullable": f.nullable}
            for f in input_fields(problem.Row)
        },
        "optional": {"id": {"type": "integer"}},
        "features": features,
        "output": problem.description,
    }


def categorical_inputs(problem: Problem) -> dict[str, tuple]:
    """The input fields the contract declares categories of (in the examples table)."""
    known = problem.contract.tables[problem.contract.examples].categorical
    return {f.name: known[f.name] for f in input_fields(problem.Row) if f.name in known}


def input_profile(rows: pa.Table, problem: Problem) -> dict:
    """Input rows profiled as the validate stage profiles a table (missing rates and mixes of
    the categorical fields): what monitoring compares, with the same drift check."""
    names = list(categorical_inputs(problem))
    counts = {c: pc.value_counts(rows[c]) for c in names}
    return validation.profile({ROWS: rows.select(names)}, {ROWS: counts})


def training_profile(
    problem: Problem, train: pa.Table, eval_flags: dict[str, np.ndarray], eval_p: np.ndarray
) -> dict:
    """profile.json: the training rows' profile and positive rate, and on the eval rows each
    flag's share and the mean prediction (a served model's baseline)."""
    profile = input_profile(train, problem)
    profile["positive_rate"] = float(pc.mean(train[problem.contract.target]).as_py())
    profile["eval"] = {
        "rows": len(eval_p),
        "flags": {name: float(np.mean(values)) for name, values in eval_flags.items()},
        "mean_probability": float(np.mean(eval_p)),
    }
    return profile


def data_end(times: pa.ChunkedArray, column: str) -> dict[str, str]:
    """The manifest's data_end: the last day of the model's data (YYYY-MM-DD) and its source.
    `times`: the training rows' values of the examples' time column `column` (dates,
    timestamps or YYYYMMDD integers). Never the build date: the same code and data build the
    same bundle (a problem without a time column has no data_end; see cd4ml.monitor)."""
    latest = pc.max(times).as_py()
    if isinstance(latest, dt.datetime):
        day = latest.date()
    elif isinstance(latest, dt.date):
        day = latest
    elif isinstance(latest, int) and bool(is_yyyymmdd(np.array([latest]))[0]):
        day = dt.date(latest // 10_000, latest // 100 % 100, latest % 100)
    else:
        raise UserError(
            f"time column {column}: the training rows' latest value {latest!r} is not a date, "
            "a timestamp or a YYYYMMDD integer; fill it, or name another column as the time"
        )
    return {"date": day.isoformat(), "source": f"latest {column} of the training rows"}


def write(
    folder: Path,
    problem: Problem,
    model_folder: Path,
    featurizer: Path,
    features: list[str],
    about: dict,
    profile: dict,
) -> dict:
    """Write a bundle into the (empty) `folder` and return its manifest: the model file of
    `model_folder`, the featurizer's folder, the schema and `profile`; `about` adds the
    provenance (data version, build, params, metrics, libraries)."""
    info = models.read_info(model_folder)
    shutil.copyfile(model_folder / info["file"], folder / info["file"])
    shutil.copytree(featurizer, folder / FEATURIZER)
    write_json(schema(problem, features), folder / SCHEMA)
    write_json(profile, folder / PROFILE)
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    manifest = {
        **about,
        "format": FORMAT,
        "name": problem.name,
        "problem": problems.module_of(problem),
        "model": info["kind"],
        "model_file": info["file"],
        "files": {
            name: {"sha256": sha256(folder / name), "bytes": (folder / name).stat().st_size}
            for name in files
        },
    }
    write_json(manifest, folder / MANIFEST)
    return manifest


def read_manifest(path: Path) -> dict:
    """A bundle's manifest, parsed, before any hash is checked (see verify)."""
    manifest_path = path / MANIFEST
    if not path.is_dir():
        raise UserError(f"{path}: no bundle folder; run `dvc repro bundle` or fetch a release")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        entries = manifest["files"].values()
        if not all(isinstance(e, dict) and isinstance(e.get("sha256"), str) for e in entries):
            raise TypeError
    except FileNotFoundError:
        raise UserError(f"{manifest_path}: not found: not a release bundle") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise UserError(
            f"{manifest_path}: not valid JSON ({err}): the bundle is damaged"
        ) from None
    except (KeyError, TypeError, AttributeError):
        raise UserError(f"{manifest_path}: has no valid 'files' list of sha256 hashes") from None
    if manifest.get("format") != FORMAT:
        raise UserError(
            f"{manifest_path}: bundle format {manifest.get('format')!r}, this code reads "
            f"format {FORMAT}; rebuild it (dvc repro bundle) or fetch a newer release"
        )
    return manifest


def verify(path: Path) -> dict:
    """The manifest, once every file is checked: none missing, none extra, every sha256 equal.
    A mismatch is a UserError naming the file."""
    manifest = read_manifest(path)
    try:
        expected = {name: entry["sha256"] for name, entry in manifest["files"].items()}
    except (KeyError, TypeError):
        raise UserError(f"{path / MANIFEST}: has no valid 'files' list of sha256 hashes") from None
    present = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()}
    present.discard(MANIFEST)
    present.discard(signing.SIGNATURE)  # the signature covers the files, the manifest among them
    for name in sorted(set(expected) - present):
        raise UserError(f"{path / name}: listed in {MANIFEST} but missing from the bundle")
    for name in sorted(present - set(expected)):
        raise UserError(f"{path / name}: not listed in {MANIFEST}: an extra file (tampered?)")
    for name in sorted(expected):
        if sha256(path / name) != expected[name]:
            raise UserError(
                f"{path / name}: sha256 differs from {MANIFEST}: the file was changed or damaged"
            )
    return manifest


@dataclass(frozen=True)
class Scored:
    """Probabilities of a batch of rows, and the problem's flags of each (e.g. an unknown
    member, scored with its cold-start values)."""

    probabilities: np.ndarray
    flags: dict[str, np.ndarray]  # a bool per row each

    def counts(self) -> dict[str, int]:
        """How many rows raise each flag."""
        return {name: int(np.sum(values)) for name, values in self.flags.items()}


@dataclass
class Scorer:
    """A verified bundle, ready to score raw input rows."""

    path: Path
    manifest: dict
    problem: Problem
    featurizer: Featurizer
    model: models.Model

    @cached_property
    def fields(self) -> list[Field]:
        """The input fields (read once: every request converts its rows with them)."""
        return input_fields(self.problem.Row)

    def rows(self, rows: pa.Table | pd.DataFrame | Sequence[dict]) -> pa.Table:
        """Raw rows as the Arrow table of the input fields, checked (see `rows`)."""
        return rows_table(rows, self.fields)

    def score(self, rows: pa.Table | pd.DataFrame | Sequence[dict]) -> Scored:
        """Probability of each raw row, in order, with the problem's flags."""
        return self.score_table(self.rows(rows))

    def score_table(self, table: pa.Table) -> Scored:
        """score() of rows already checked into the input fields' table (Scorer.rows); an
        infinite feature or a probability that is none is a health.Unhealthy naming the row."""
        found = self.featurizer.transform(table)
        health.check(found.x)
        p = self.model.predict(found.x) if len(found.x) else np.empty(0, dtype=np.float32)
        health.check(p=p)
        return Scored(p, found.flags)

    def predict_proba(self, rows: pa.Table | pd.DataFrame | Sequence[dict]) -> np.ndarray:
        """Probability of each raw row, in order."""
        return self.score(rows).probabilities


def load(path: str | Path, problem: Problem) -> Scorer:
    """Verify a bundle (every hash), then load its featurizer and model: never with pickle."""
    path = Path(path)
    manifest = read_manifest(path)
    mine = problems.module_of(problem)
    if manifest.get("problem") != mine:
        raise UserError(
            f"{path / MANIFEST}: a bundle of problem {manifest.get('problem')!r}, not {mine!r} "
            "(params.yaml's problem)"
        )
    kind = models.kind_of(problem.kinds, manifest.get("model"), path / MANIFEST)
    if manifest.get("model_file") != kind.file:
        raise UserError(
            f"{path / MANIFEST}: the model of kind {kind.name} is in {kind.file}, not "
            f"{manifest.get('model_file')!r}"
        )
    # The model's library is imported while the hashes are checked and the featurizer's files
    # are read: both release the GIL, and the import is most of a cold start.
    with ThreadPoolExecutor(1) as pool:
        library = pool.submit(importlib.import_module, kind.library)
        manifest = verify(path)
        featurizer = problem.load_featurizer(path / FEATURIZER)
        library.result()
    model = models.Model(kind, kind.load(path / kind.file))
    return Scorer(path, manifest, problem, featurizer, model)


def _first_bad(values: Sequence[Any], field: Field) -> str:
    """The one-line complaint about the first value of a field that does not fit it."""
    for i, value in enumerate(values):
        if value is None or (isinstance(value, float) and np.isnan(value)):
            if not field.nullable:
                return f"rows[{i}].{field.name} is missing: every row needs it"
            continue
        try:
            pa.array([value], type=field.type)
        except (pa.ArrowTypeError, pa.ArrowInvalid, TypeError, OverflowError):
            return (
                f"rows[{i}].{field.name} must be a {_WORDS.get(str(field.type), field.type)}, "
                f"got {type(value).__name__} {value!r:.40}"
            )
    return f"column {field.name} must hold {field.type} values"


_WORDS = {"string": "string", "int64": "whole number", "double": "number", "bool": "boolean"}


def _empty_as_null(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """An empty text field is a missing one, as in the raw CSV files."""
    return pc.if_else(pc.equal(values, ""), pa.scalar(None, values.type), values)


# The Arrow types a column may hold for a field of each type: the same values, in another
# width (never a number as text, nor text as a number, which Arrow would cast).
_FITS = {
    "string": (pa.types.is_string, pa.types.is_large_string),
    "int64": (pa.types.is_integer,),
    "double": (pa.types.is_integer, pa.types.is_floating),
    "bool": (pa.types.is_boolean,),
}


def _column(values: Any, field: Field) -> pa.Array | pa.ChunkedArray:
    if isinstance(values, pa.ChunkedArray | pa.Array):
        if pa.types.is_dictionary(values.type):
            values = values.cast(values.type.value_type)
        if values.type != field.type:
            null = pa.types.is_null(values.type) and field.nullable
            if not null and not any(fits(values.type) for fits in _FITS[str(field.type)]):
                raise UserError(
                    f"column {field.name} must hold {field.type} values, got {values.type}"
                )
            try:
                values = values.cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:  # e.g. out of range
                first = str(err).strip().splitlines()[0]
                raise UserError(
                    f"column {field.name} must hold {field.type} values ({first})"
                ) from None
        arr = values
    else:
        try:
            arr = pa.array(values, type=field.type, from_pandas=True)
        except (pa.ArrowTypeError, pa.ArrowInvalid, TypeError, OverflowError):
            raise UserError(_first_bad(list(values), field)) from None
    if not field.nullable and arr.null_count:
        values = arr.to_pylist() if hasattr(arr, "to_pylist") else list(values)
        raise UserError(_first_bad(values, field))
    if field.nullable and pa.types.is_string(field.type):
        return _empty_as_null(arr)
    return arr


def rows_table(rows: pa.Table | pd.DataFrame | Sequence[dict], fields: list[Field]) -> pa.Table:
    """Raw rows as an Arrow table of the input fields, checked: a missing field, a missing
    required value, or a value of the wrong type is a UserError naming the row and the field."""
    names = [f.name for f in fields]
    if isinstance(rows, pa.Table | pd.DataFrame):
        present = rows.column_names if isinstance(rows, pa.Table) else list(rows.columns)
        missing = [c for c in names if c not in present]
        if missing:
            raise UserError(f"rows lack the column(s) {missing}; a row has {names}")
        if isinstance(rows, pa.Table):
            return pa.table({f.name: _column(rows[f.name], f) for f in fields})
        return pa.table({f.name: _column(rows[f.name].to_numpy(dtype=object), f) for f in fields})
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise UserError(f"rows[{i}] must be an object of fields, got {type(row).__name__}")
        missing = [c for c in names if c not in row]
        if missing:
            raise UserError(f"rows[{i}] lacks the field(s) {missing}; a row has {names}")
    return pa.table({f.name: _column([row[f.name] for row in rows], f) for f in fields})
