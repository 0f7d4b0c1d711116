"""Fitting KKBox's featurizer: join the plays with members and songs, fit vocabularies, counts
and target encodings on the training part, write the features of every part and the fitted
featurizer (what the release bundle scores raw rows with).

`fit` does it in this process; `Plan` does the same in passes of mergeable statistics over
partitions of the plays, which the Dask engine (cd4ml.engine) runs on a cluster: the features
come out the same, bit for bit.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import Field

from cd4ml.io import read_parquet
from cd4ml.params import Section, Seed
from cd4ml.reading import read_table
from kkbox import features, featurizer
from kkbox.tables import CONTRACT, MEMBERS, SONG_EXTRA, SONGS

if TYPE_CHECKING:
    from cd4ml.problem import FeatureOutput

log = logging.getLogger(__name__)


class Preprocess(Section):
    """params.yaml's preprocess: vocabularies and target encodings."""

    min_category_count: Annotated[int, Field(ge=1)]  # rarer categories get the "unseen" code
    target_smoothing: Annotated[float, Field(ge=0)]  # prior weight of the target encodings
    target_folds: Annotated[int, Field(ge=2, le=100)]  # out-of-fold encoding of training rows
    seed: Seed


def _read(data: Path, name: str, columns: list[str] | None = None) -> pa.Table:
    return read_table(data / name, CONTRACT.tables[name], columns)


def _ids(parts: dict[str, Path], column: str) -> dict[str, pa.ChunkedArray]:
    """One id column of every part, dictionary-encoded as split wrote it."""
    return {
        part: read_parquet(path, columns=[column], read_dictionary=[column])[column]
        for part, path in parts.items()
    }


def _joined(
    path: Path, keys: tuple[np.ndarray, np.ndarray], attrs: tuple[pd.DataFrame, pd.DataFrame]
) -> pd.DataFrame:
    """One part of the plays joined with the attributes, the target kept."""
    columns = [*features.SOURCE, "target"]
    plays = read_parquet(path, columns=columns, read_dictionary=features.SOURCE).to_pandas()
    frame = features.join_plays(plays, *keys, *attrs)
    frame["target"] = plays["target"].to_numpy()
    log.info("joined %s: %d rows, %d not in songs.csv", path, len(frame), int((keys[1] < 0).sum()))
    return frame


def _attributes(
    data: Path, members: pa.Table, songs: pa.Table
) -> tuple[pd.DataFrame, pd.DataFrame]:
    return features.attributes(members, songs, _read(data, SONG_EXTRA, ["song_id", "isrc"]))


def fit(data: Path, parts: dict[str, Path], settings: Preprocess, out: FeatureOutput) -> None:
    """The local engine: every part in memory in this process; each file is written on another
    thread while the next one is computed."""
    members, songs = _read(data, MEMBERS), _read(data, SONGS)
    with ThreadPoolExecutor(1) as pool:
        # Arrow's kernels release the GIL: the song keys are found while the attributes are made.
        song_keys = pool.submit(features.keys_by_part, _ids(parts, "song_id"), songs["song_id"])
        member_keys = features.keys_by_part(_ids(parts, "msno"), members["msno"])
        attrs = _attributes(data, members, songs)
        keys = {part: (member_keys[part], song_keys.result()[part]) for part in parts}
    log.info("attributes: %d members, %d songs", len(attrs[0]), len(attrs[1]))
    # They do not depend on the fit: written while it runs.
    featurizer.save_attributes(
        out.featurizer, members["msno"], attrs[0], songs["song_id"], attrs[1], out.write
    )
    train, valid = (_joined(parts[p], keys.pop(p), attrs) for p in ("train", "valid"))
    targets = {"train": train["target"].to_numpy(), "valid": valid["target"].to_numpy()}

    def write(train_x: pd.DataFrame, valid_x: pd.DataFrame) -> None:
        out.features("train", train_x, targets["train"])
        out.features("valid", valid_x, targets["valid"])

    encoder, *_ = features.fit_training(
        train,
        valid,
        settings.min_category_count,
        settings.target_smoothing,
        (settings.target_folds, settings.seed),
        write,
    )
    featurizer.save_encoder(out.featurizer, encoder, out.write)
    del train, valid, _
    frame = _joined(parts["eval"], keys.pop("eval"), attrs)
    out.features("eval", features.transform(frame, encoder), frame["target"].to_numpy())


# ---------------------------------------------------------------------------------------------
# The same fit in passes over partitions (cd4ml.engine.Plan): the methods run on the workers.


@dataclass(frozen=True)
class Tables:
    """The member and song tables a worker joins the plays with (see features.Joinable)."""

    member_ids: pa.ChunkedArray
    song_ids: pa.ChunkedArray
    attrs: tuple[pd.DataFrame, pd.DataFrame]
    joinable: tuple[features.Joinable, features.Joinable]


@dataclass(frozen=True)
class Plan:
    """Two passes: category counts (merged: the vocabularies), then the statistics of every
    key (merged: the encoders). The training rows' own (key, fold) statistics are merged too:
    out-of-fold encoding takes them away."""

    settings: Preprocess
    side_files: tuple[str, ...] = (MEMBERS, SONGS, SONG_EXTRA)
    columns: tuple[str, ...] = (*features.SOURCE, "msno", "song_id", "target")
    dictionary: tuple[str, ...] = (*features.SOURCE, "msno", "song_id")
    passes: int = 2

    def side(self, folder: Path) -> Tables:
        """The attribute tables, from the raw files in `folder`."""
        members, songs = _read(folder, MEMBERS), _read(folder, SONGS)
        attrs = _attributes(folder, members, songs)
        joinable = (features.joinable(attrs[0]), features.joinable(attrs[1]))
        return Tables(members["msno"], songs["song_id"], attrs, joinable)

    def prepare(self, plays: pd.DataFrame, side: Tables) -> pd.DataFrame:
        """A partition's plays joined with the attributes, the target kept."""
        keys = [
            features.keys_of(plays[column], ids)
            for column, ids in (("msno", side.member_ids), ("song_id", side.song_ids))
        ]
        frame = features.join_plays(plays, *keys, *side.joinable)
        frame["target"] = plays["target"].to_numpy()
        return frame

    def _folds(self, start: int, rows: int) -> features.Folds:
        n = self.settings.target_folds
        return features.Folds(features.assign_folds(start, start + rows, n, self.settings.seed), n)

    def partial(self, step: int, part: str, frame: pd.DataFrame, start: int, state: Any) -> tuple:
        """Pass 0: the category counts of the train rows and of all training rows. Pass 1: the
        statistics of the train rows (past vocabularies), of their (key, fold) pairs, and of all
        training rows (the vocabularies of all). None where a part has no rows of a kind."""
        if step == 0:
            counts = features.category_counts(frame)
            return (counts if part == "train" else None), counts
        past, full = state
        stats = (
            features.key_stats(frame, past) if part == "train" else None,
            features.key_stats(frame, past, self._folds(start, len(frame)))
            if part == "train"
            else None,
            features.key_stats(frame, full),
        )
        return tuple(None if s is None else {n: v.compact() for n, v in s.items()} for s in stats)

    def merge(self, step: int, *partials: tuple) -> tuple:
        """Partials added up, kind by kind."""
        out = []
        for kind in range(len(partials[0])):
            found = [p[kind] for p in partials if p[kind] is not None]
            if not found:
                out.append(None)
            elif step == 0:
                out.append(
                    {
                        col: pd.concat([f[col] for f in found]).groupby(level=0).sum()
                        for col in found[0]
                    }
                )
            else:
                out.append({n: features.KeyStats.merge([f[n] for f in found]) for n in found[0]})
        return tuple(out)

    def finish(self, step: int, merged: tuple, state: Any) -> Any:
        """Pass 0: the vocabularies (of the train rows, of all). Pass 1: the train rows' encoder,
        their (key, fold) statistics and the encoder of all training rows (eval's, test's)."""
        smoothing = self.settings.target_smoothing
        if step == 0:
            return tuple(
                features.fit_vocabularies([counts], self.settings.min_category_count)
                for counts in merged
            )
        past, fold_stats, full = merged
        return (
            features.encoder_of(state[0], past, smoothing),
            fold_stats,
            features.encoder_of(state[1], full, smoothing),
        )

    def transform(
        self, part: str, frame: pd.DataFrame, start: int, state: Any
    ) -> tuple[pd.DataFrame, np.ndarray]:
        """A partition's features and target: train rows out-of-fold, valid rows with the
        train rows' encoder, eval rows with the encoder of all training rows."""
        past, fold_stats, full = state
        if part == "train":
            x = features.transform(frame, past, self._folds(start, len(frame)), fold_stats)
        else:
            x = features.transform(frame, past if part == "valid" else full)
        return x, frame["target"].to_numpy()

    def save(self, side: Tables, state: Any, folder: Path) -> None:
        """The fitted featurizer's files."""
        featurizer.save(
            folder, state[2], side.member_ids, side.attrs[0], side.song_ids, side.attrs[1]
        )
