"""Small real bundles for the unit tests, without the pipeline: synthetic tables with Kaggle's
columns, a featurizer fitted with the calls of kkbox.fit, models of every kind saved as the
train stage saves them, and bundles written as the bundle stage writes them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from cd4ml import bundle, model, params
from cd4ml.io import read_parquet, write_parquet
from kkbox import PROBLEM, features, featurizer
from tests.project import ROOT

N_MEMBERS, N_SONGS, N_PLAYS = 60, 90, 1500
N_FIT, N_TRAIN = 900, 1100  # the train part's fit rows, then its early-stopping (valid) rows
# Eval rows of a member and a song that are not in the tables, and of ones that are but were
# never played in the training part (their artist neither): every statistic is a cold start.
COLD = [("m-new", "s-new"), ("m-idle", "s-idle")]
# A known member with a song not in songs.csv: only the song's statistics are cold.
NEW_SONG = ("m000", "s-new")
PREPROCESS = {"min_count": 5, "smoothing": 20.0, "folds": (5, 42)}
PARTS = ("train", "valid", "eval")


def raw_tables(seed: int = 0) -> dict[str, pa.Table]:
    """Kaggle's tables (validated types) with a real signal: each member and song has its own
    replay rate, and plays from the own library replay more. The plays come as the split's
    parts: train (fit rows), valid (early-stopping rows) and eval."""
    rng = np.random.default_rng(seed)
    member_ids = [f"m{i:03d}" for i in range(N_MEMBERS)] + ["m-idle"]
    song_ids = [f"s{i:03d}" for i in range(N_SONGS)] + ["s-idle"]
    n_m, n_s = len(member_ids), len(song_ids)
    members = pa.table(
        {
            "msno": member_ids,
            "city": pa.array(rng.integers(1, 6, n_m), pa.int16()),
            "bd": pa.array(rng.choice([0, 22, 27, 35, 1051], n_m), pa.int16()),
            "gender": pa.array(rng.choice(["male", "female", None], n_m).tolist(), pa.string()),
            "registered_via": pa.array(rng.choice([4, 7, 9], n_m), pa.int16()),
            "registration_init_time": pa.array(
                rng.choice([20120101, 20150630, 19700101], n_m), pa.int32()
            ),
            "expiration_date": pa.array(rng.choice([20170901, 20171005], n_m), pa.int32()),
        }
    )
    songs = pa.table(
        {
            "song_id": song_ids,
            "song_length": pa.array(rng.integers(120_000, 300_000, n_s), pa.int32()),
            "genre_ids": rng.choice(["465", "958|1609", "2022"], n_s).tolist(),
            "artist_name": [f"artist{i % 15}" for i in range(N_SONGS)] + ["artist-idle"],
            "composer": pa.array(rng.choice(["a", "a|b", None], n_s).tolist(), pa.string()),
            "lyricist": pa.array(rng.choice(["x", None], n_s).tolist(), pa.string()),
            "language": pa.array(rng.choice([3.0, 52.0, -1.0], n_s), pa.float32()),
        }
    )
    years = rng.integers(0, 99, n_s)
    extra = pa.table(
        {
            "song_id": song_ids,
            "name": [f"name {i}" for i in range(n_s)],
            "isrc": [f"{'TW' if i % 2 else 'US'}A{y:02d}12345" for i, y in enumerate(years)],
        }
    )
    member, song = rng.integers(0, N_MEMBERS, N_PLAYS), rng.integers(0, N_SONGS, N_PLAYS)
    tab = rng.choice(["my library", "discover", "search", None], N_PLAYS)
    logit = (
        rng.normal(0, 1.5, N_MEMBERS)[member]
        + rng.normal(0, 1.5, N_SONGS)[song]
        + np.where(tab == "my library", 1.0, 0.0)
    )
    extra_rows = [*COLD, NEW_SONG]
    plays = pa.table(
        {
            "msno": [member_ids[i] for i in member] + [m for m, _ in extra_rows],
            "song_id": [song_ids[i] for i in song] + [s for _, s in extra_rows],
            "source_system_tab": pa.array([*tab.tolist(), None, "my library", "search"]),
            "source_screen_name": pa.array(
                rng.choice(["Local playlist more", "Radio", None], N_PLAYS + 3).tolist(),
                pa.string(),
            ),
            "source_type": pa.array(
                rng.choice(["local-library", "radio", None], N_PLAYS + 3).tolist(), pa.string()
            ),
            "target": pa.array(
                [*(rng.random(N_PLAYS) < 1 / (1 + np.exp(-logit))), 0, 1, 1], pa.int8()
            ),
        }
    )
    return {
        "members": members,
        "songs": songs,
        "song_extra_info": extra,
        "train": plays.slice(0, N_FIT),
        "valid": plays.slice(N_FIT, N_TRAIN - N_FIT),
        "eval": plays.slice(N_TRAIN),
    }


@dataclass
class Fitted:
    """A featurizer fitted as the preprocess stage fits one, and what came with it."""

    folder: Path  # the saved featurizer's files
    encoder: features.Encoder
    train_x: pd.DataFrame  # the fit rows, out-of-fold
    train_y: np.ndarray
    valid_x: pd.DataFrame  # the early-stopping rows, with the fit rows' statistics
    valid_y: np.ndarray
    eval_raw: pa.Table  # raw eval plays, target included
    eval_x: pd.DataFrame  # their features, as preprocess writes them
    train_raw: pa.Table  # raw training plays (fit and early-stopping rows), target included


def fit_featurizer(folder: Path, tables: dict[str, pa.Table] | None = None) -> Fitted:
    """Fit and save a featurizer into folder/featurizer with the calls kkbox.fit makes (the
    split's parts read back from Parquet as it reads them)."""
    tables = tables or raw_tables()
    parts = {part: folder / "split" / f"{part}.parquet" for part in PARTS}
    for part, path in parts.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_parquet(tables[part], path)
    members, songs = tables["members"], tables["songs"]

    def ids(column: str) -> dict[str, pa.ChunkedArray]:
        return {
            part: read_parquet(path, columns=[column], read_dictionary=[column])[column]
            for part, path in parts.items()
        }

    member_keys = features.keys_by_part(ids("msno"), members["msno"])
    song_keys = features.keys_by_part(ids("song_id"), songs["song_id"])
    attrs = features.attributes(
        members, songs, tables["song_extra_info"].select(["song_id", "isrc"])
    )

    def joined(part: str) -> pd.DataFrame:
        columns = [*features.SOURCE, "target"]
        plays = read_parquet(
            parts[part], columns=columns, read_dictionary=features.SOURCE
        ).to_pandas()
        frame = features.join_plays(plays, member_keys[part], song_keys[part], *attrs)
        frame["target"] = plays["target"].to_numpy()
        return frame

    train, valid = joined("train"), joined("valid")
    encoder, train_x, valid_x = features.fit_training(
        train, valid, PREPROCESS["min_count"], PREPROCESS["smoothing"], PREPROCESS["folds"]
    )
    eval_x = features.transform(joined("eval"), encoder)
    out = folder / "featurizer"
    featurizer.save(out, encoder, members["msno"], attrs[0], songs["song_id"], attrs[1])
    return Fitted(
        out,
        encoder,
        train_x,
        train["target"].to_numpy(),
        valid_x,
        valid["target"].to_numpy(),
        tables["eval"],
        eval_x,
        pa.concat_tables([tables["train"], tables["valid"]]),
    )


TRAIN = params.section(ROOT / "params.yaml", "train", model.train_settings(PROBLEM.kinds))
ABOUT = {
    "data_version": "x",
    "build": {"sha256": "b" * 64, "code": {"sha256": "c" * 64, "files": {}}, "params": {}},
}


def small(kind: str) -> Any:
    """The committed train section with a few small trees, one thread (fast)."""
    return TRAIN.model_copy(
        update={
            "model": kind,
            "xgb": TRAIN.xgb.model_copy(update={"n_estimators": 20, "n_jobs": 1}),
            "rf": TRAIN.rf.model_copy(update={"n_estimators": 5, "max_depth": 6, "n_jobs": 1}),
        }
    )


def train(fitted: Fitted, kind: str, shuffle_targets: bool = False) -> model.Model:
    """A fitted model of the problem's kind `kind`, as the train stage fits one;
    `shuffle_targets` makes one that learned nothing (a weak champion)."""
    y, valid_y = fitted.train_y, fitted.valid_y
    if shuffle_targets:
        rng = np.random.default_rng(1)
        y, valid_y = rng.permutation(y), rng.permutation(valid_y)
    built = model.build(PROBLEM.kinds, small(kind))
    built.kind.fit(built.estimator, fitted.train_x, y, (fitted.valid_x, valid_y))
    return built


def save_model(folder: Path, fitted: Fitted, trained: model.Model) -> Path:
    """The model folder the train stage writes (the kind's file and model.json)."""
    info = {
        "features": list(fitted.train_x.columns),
        "n_train_rows": len(fitted.train_y),
        "n_valid_rows": len(fitted.valid_y),
        "data_version": ABOUT["data_version"],
    }
    model.save(folder, trained, info)
    return folder


def write_bundle(
    folder: Path, fitted: Fitted, trained: model.Model, about: dict | None = None
) -> Path:
    """A bundle as the bundle stage writes one, its training profile included (its model folder
    next to it, named <folder>-model); `about`: the provenance (default ABOUT)."""
    model_folder = save_model(folder.with_name(f"{folder.name}-model"), fitted, trained)
    rows = bundle.rows_table(fitted.eval_raw, bundle.input_fields(PROBLEM.Row))
    flags = PROBLEM.load_featurizer(fitted.folder).transform(rows).flags
    p = trained.predict(fitted.eval_x)
    profile = bundle.training_profile(PROBLEM, fitted.train_raw, flags, p)
    folder.mkdir(parents=True)
    bundle.write(
        folder,
        PROBLEM,
        model_folder,
        fitted.folder,
        list(fitted.eval_x.columns),
        ABOUT if about is None else about,
        profile,
    )
    return folder
