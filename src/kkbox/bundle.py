"""The release bundle: a folder that scores raw play rows, with nothing loaded through pickle.

    model.ubj | model.skops   the model in its library's own format (XGBoost UBJSON; the random
                              forest through skops, which loads only the types listed here)
    encoder.json, members.parquet, songs.parquet, stats.parquet   the featurizer (kkbox.featurizer)
    schema.json               the input fields and their types, the feature names in order
    profile.json              the training plays' profile, for monitoring (kkbox.validation's)
    manifest.json             sha256 of every other file, data version, git commit, params,
                              eval metrics, library versions

`load(path)` checks every hash before it reads anything and returns a Scorer.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from kkbox import featurizer, validation
from kkbox.features import FEATURES, SOURCE
from kkbox.io import UserError, sha256, write_json

log = logging.getLogger(__name__)

NAME = "kkbox-recommender"  # the artifact's name in dvc.yaml and in the registry
FORMAT = 1
MANIFEST = "manifest.json"
SCHEMA = "schema.json"
MODEL_FILES = {"xgb": "model.ubj", "rf": "model.skops"}
# Kaggle's columns of a play; the member and the song are required, a source may be empty.
IDS = ("msno", "song_id")
INPUT = (*IDS, *SOURCE)
INPUT_SCHEMA = pa.schema([(name, pa.string()) for name in INPUT])
# The types a random-forest bundle needs beyond skops' defaults (skops.io.get_untrusted_types
# of one): a file that needs any other type is refused before it is loaded, and what loads must
# be a RandomForestClassifier.
RF_TRUSTED = (
    "numpy.dtype",
    "sklearn.ensemble._forest.RandomForestClassifier",
    "sklearn.tree._classes.DecisionTreeClassifier",
    "sklearn.tree._tree.Tree",
)


def schema() -> dict:
    """What a caller sends and what the model sees."""
    return {
        "input": {
            **{name: {"type": "string", "required": True} for name in IDS},
            **{name: {"type": "string", "required": True, "nullable": True} for name in SOURCE},
        },
        "optional": {"id": {"type": "integer"}},
        "features": FEATURES,
        "output": "probability of a replay within a month (target = 1)",
    }


PROFILE = "profile.json"
PLAYS = "plays"  # the profile's one table: the plays a model scores


def play_profile(plays: pa.Table) -> dict:
    """The source columns of some plays profiled as the validate stage profiles a table
    (missing rates, category mixes): what monitoring compares, with the same drift check."""
    counts = {c: pc.value_counts(plays[c]) for c in SOURCE}
    return validation.profile({PLAYS: plays.select(SOURCE)}, {PLAYS: counts})


def training_profile(
    train_plays: pa.Table, eval_unknown: tuple[np.ndarray, np.ndarray], eval_p: np.ndarray
) -> dict:
    """profile.json: the training plays' profile and positive rate, and on the eval rows the
    share of unknown members and songs and the mean prediction (a served model's baseline)."""
    profile = play_profile(train_plays)
    profile["positive_rate"] = float(pc.mean(train_plays["target"]).as_py())
    profile["eval"] = {
        "rows": len(eval_p),
        "unknown_member_share": float(np.mean(eval_unknown[0])),
        "unknown_song_share": float(np.mean(eval_unknown[1])),
        "mean_probability": float(np.mean(eval_p)),
    }
    return profile


def _save_model(estimator: Any, kind: str, path: Path) -> None:
    if kind == "xgb":
        estimator.save_model(path)  # the sklearn wrapper keeps best_iteration in the file
        return
    import skops.io

    skops.io.dump(estimator, path)


def write(
    folder: Path,
    estimator: Any,
    kind: str,
    featurizer_dir: Path,
    about: dict,
    profile: dict | None = None,
) -> dict:
    """Write a bundle into the (empty) `folder` and return its manifest; `about` adds the
    provenance (data version, git commit, params, metrics, libraries), `profile` the training
    profile monitoring compares with (training_profile)."""
    if kind not in MODEL_FILES:
        raise UserError(f"model kind {kind!r} has no bundle format; known: {sorted(MODEL_FILES)}")
    _save_model(estimator, kind, folder / MODEL_FILES[kind])
    for name in featurizer.FILES:
        shutil.copyfile(featurizer_dir / name, folder / name)
    write_json(schema(), folder / SCHEMA)
    if profile is not None:
        write_json(profile, folder / PROFILE)
    files = sorted(p.name for p in folder.iterdir() if p.name != MANIFEST)
    manifest = {
        **about,
        "format": FORMAT,
        "name": NAME,
        "model": kind,
        "files": {
            name: {"sha256": sha256(folder / name), "bytes": (folder / name).stat().st_size}
            for name in files
        },
    }
    write_json(manifest, folder / MANIFEST)
    return manifest


def verify(path: Path) -> dict:
    """The manifest, once every file is checked: none missing, none extra, every sha256 equal.
    A mismatch is a UserError naming the file."""
    manifest_path = path / MANIFEST
    if not path.is_dir():
        raise UserError(f"{path}: no bundle folder; run `dvc repro bundle` or fetch a release")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        files = manifest["files"]
        expected = {name: entry["sha256"] for name, entry in files.items()}
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
            f"format {FORMAT}"
        )
    present = {p.name for p in path.iterdir()} - {MANIFEST}
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


def _load_model(path: Path, kind: Any) -> Any:
    if kind not in MODEL_FILES:
        raise UserError(
            f"{path / MANIFEST}: model kind {kind!r} is not one of {sorted(MODEL_FILES)}"
        )
    file = path / MODEL_FILES[kind]
    if not file.exists():
        raise UserError(f"{file}: a {kind} bundle needs this file; the manifest does not match")
    if kind == "xgb":
        from xgboost import XGBClassifier
        from xgboost.core import XGBoostError

        model = XGBClassifier()
        try:
            model.load_model(file)
        except XGBoostError as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else "unreadable"
            raise UserError(f"{file}: not an XGBoost model ({first[:160]})") from None
        objective = json.loads(model.get_booster().save_config())["learner"]["objective"]
        if objective["name"] != "binary:logistic":
            raise UserError(f"{file}: an XGBoost {objective['name']} model, not binary:logistic")
        return model
    import skops.io

    try:
        untrusted = skops.io.get_untrusted_types(file=file)
    except Exception as err:  # skops raises zip, JSON and key errors for a foreign file
        raise UserError(f"{file}: not a skops file ({type(err).__name__})") from None
    refused = sorted(set(untrusted) - set(RF_TRUSTED))
    if refused:
        raise UserError(f"{file}: holds types a random-forest bundle never needs: {refused}")
    model = skops.io.load(file, trusted=list(RF_TRUSTED))
    from sklearn.ensemble import RandomForestClassifier

    if not isinstance(model, RandomForestClassifier):
        raise UserError(f"{file}: holds a {type(model).__name__}, not a RandomForestClassifier")
    return model


@dataclass(frozen=True)
class Scored:
    """Probabilities of a batch of plays, and which had a member or a song the bundle does not
    know (scored with its cold-start values: counts 0, target encodings at the prior)."""

    probabilities: np.ndarray
    unknown_member: np.ndarray  # bool per row
    unknown_song: np.ndarray

    @property
    def unknown_members(self) -> int:
        return int(self.unknown_member.sum())

    @property
    def unknown_songs(self) -> int:
        return int(self.unknown_song.sum())


@dataclass
class Scorer:
    """A verified bundle, ready to score raw play rows."""

    path: Path
    manifest: dict
    featurizer: featurizer.Featurizer
    model: Any

    def features(self, rows: pa.Table | pd.DataFrame | Sequence[dict]) -> pd.DataFrame:
        """The model features of raw play rows (checked first, see plays())."""
        return self.featurizer.transform(plays(rows))

    def score(self, rows: pa.Table | pd.DataFrame | Sequence[dict]) -> Scored:
        """Probability of a replay for each raw play row, in order, with the cold-start counts."""
        table = plays(rows)
        keys = self.featurizer.keys(table)
        x = self.featurizer.transform(table, keys)
        if not len(x):
            p = np.empty(0, dtype=np.float32)
        elif self.manifest.get("model") == "xgb":
            # As a float32 matrix: the same numbers XGBoost makes of the DataFrame, without
            # its per-call DataFrame checks (a 1-row request: 0.2 ms instead of 1.6 ms).
            p = self.model.predict_proba(x.to_numpy(dtype=np.float32))[:, 1]
        else:
            p = self.model.predict_proba(x)[:, 1]
        return Scored(p, keys[0] < 0, keys[1] < 0)

    def predict_proba(self, rows: pa.Table | pd.DataFrame | Sequence[dict]) -> np.ndarray:
        """Probability of a replay for each raw play row, in order."""
        return self.score(rows).probabilities


def _import_model_library(kind: Any) -> None:
    """Import the model's library (about a second: XGBoost brings scikit-learn)."""
    if kind == "xgb":
        import xgboost  # noqa: F401
    else:
        import skops.io  # noqa: F401


def load(path: str | Path) -> Scorer:
    """Verify a bundle (every hash), then load its featurizer and model: never with pickle."""
    path = Path(path)
    # The model library is imported while the hashes are checked and the featurizer's Parquet
    # files are read: both release the GIL, and the import is most of a cold start.
    with ThreadPoolExecutor(1) as pool:
        manifest = _peek_kind(path)
        library = pool.submit(_import_model_library, manifest)
        manifest = verify(path)
        features = featurizer.load(path)
        library.result()
        return Scorer(path, manifest, features, _load_model(path, manifest.get("model")))


def _peek_kind(path: Path) -> Any:
    """The model kind the manifest names, read before it is verified (only to pick the library
    to import early; nothing is loaded from it)."""
    try:
        return json.loads((path / MANIFEST).read_text(encoding="utf-8")).get("model")
    except (OSError, ValueError, AttributeError):
        return None


def _first_bad(values: Sequence[Any], column: str, nullable: bool) -> str:
    """The one-line complaint about the first value of a column that is not a string."""
    for i, value in enumerate(values):
        if value is None or (isinstance(value, float) and np.isnan(value)):
            if not nullable:
                return f"rows[{i}].{column} is missing: every play needs a member and a song"
        elif not isinstance(value, str):
            return f"rows[{i}].{column} must be a string, got {type(value).__name__} {value!r:.40}"
    return f"column {column} must hold strings"


def _empty_as_null(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """An empty source field is a missing one, as in Kaggle's CSV files."""
    return pc.if_else(pc.equal(values, ""), pa.scalar(None, values.type), values)


def _column(values: Sequence[Any], column: str) -> pa.Array:
    nullable = column not in IDS
    try:
        arr = pa.array(values, type=pa.string(), from_pandas=True)
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        raise UserError(_first_bad(values, column, nullable)) from None
    if not nullable and arr.null_count:
        raise UserError(_first_bad(values, column, nullable))
    return _empty_as_null(arr) if nullable else arr


def plays(rows: pa.Table | pd.DataFrame | Sequence[dict]) -> pa.Table:
    """Raw play rows as an Arrow table of Kaggle's columns (INPUT), checked: a missing field,
    a missing member or song, or a value that is not a string is a UserError naming the row
    and the field."""
    if isinstance(rows, pa.Table):
        missing = [c for c in INPUT if c not in rows.column_names]
        if missing:
            raise UserError(f"rows lack the column(s) {missing}; a play has {list(INPUT)}")
        columns = {}
        for c in INPUT:
            values = rows[c]
            if pa.types.is_dictionary(values.type):
                values = values.cast(values.type.value_type)
            if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
                if not (pa.types.is_null(values.type) and c not in IDS):
                    raise UserError(f"column {c} must hold strings, got {values.type}")
                values = values.cast(pa.string())
            if c in IDS and values.null_count:
                raise UserError(_first_bad(values.to_pylist(), c, nullable=False))
            columns[c] = values if c in IDS else _empty_as_null(values)
        return pa.table(columns)
    if isinstance(rows, pd.DataFrame):
        missing = [c for c in INPUT if c not in rows.columns]
        if missing:
            raise UserError(f"rows lack the column(s) {missing}; a play has {list(INPUT)}")
        return pa.table({c: _column(rows[c].to_numpy(dtype=object), c) for c in INPUT})
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise UserError(f"rows[{i}] must be an object of fields, got {type(row).__name__}")
        missing = [c for c in INPUT if c not in row]
        if missing:
            raise UserError(f"rows[{i}] lacks the field(s) {missing}; a play has {list(INPUT)}")
    return pa.table({c: _column([row[c] for row in rows], c) for c in INPUT})
