"""The fitted featurizer as files: what turns a raw play row into the model's features.

The preprocess stage writes it (kkbox.fit); the release bundle carries it, and scoring a raw row
runs the same functions of kkbox.features that made the training features. Files (no pickle):
  encoder.json      vocabularies, reserved codes, smoothing, prior, the statistics' layout
  members.parquet   msno and the member attributes, in the order the member keys number them
  songs.parquet     song_id and the song attributes (artist_key included), likewise
  stats.parquet     counts and target sums per key of every statistic, one row per slot
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from cd4ml.io import UserError, read_parquet, write_json, write_parquet
from cd4ml.problem import Features
from kkbox import features

FILES = ("encoder.json", "members.parquet", "songs.parquet", "stats.parquet")
ID_COLUMNS = {"members": "msno", "songs": "song_id"}
FORMAT = 1


# Up to this many rows a play's member and song are looked up in a hash index built once per
# process (a served request: microseconds); larger batches use Arrow's hash join, which builds
# its hash of the table for the call but never turns ids into Python strings (test.csv).
SMALL_BATCH = 50_000


@dataclass
class Featurizer:
    """The encoder fitted on the training part and the member and song tables it joins."""

    encoder: features.Encoder
    member_ids: pa.Array
    member_attrs: pd.DataFrame
    song_ids: pa.Array
    song_attrs: pd.DataFrame
    _indexes: dict[str, pd.Index] = field(default_factory=dict, repr=False)
    _joinable: dict[str, features.Joinable] = field(default_factory=dict, repr=False)

    def _tables(self) -> tuple[features.Joinable, features.Joinable]:
        """The attribute tables ready to join, made once (a request then only gathers rows)."""
        if not self._joinable:
            self._joinable["members"] = features.joinable(self.member_attrs)
            self._joinable["songs"] = features.joinable(self.song_attrs)
        return self._joinable["members"], self._joinable["songs"]

    def _index(self, name: str, ids: pa.Array) -> pd.Index:
        if name not in self._indexes:
            # object, not pandas' Arrow-backed str: its hash table is built faster
            index = pd.Index(ids.to_numpy(zero_copy_only=False), dtype=object)
            index.get_indexer(index[:1])  # builds the hash table now, not on the first request
            self._indexes[name] = index
        return self._indexes[name]

    def _lookup(self, name: str, ids: pa.ChunkedArray, table_ids: pa.Array) -> np.ndarray:
        if len(ids) > SMALL_BATCH:
            return features.keys_of(ids, table_ids)
        values = ids.to_numpy() if isinstance(ids, pa.ChunkedArray) else np.asarray(ids)
        return self._index(name, table_ids).get_indexer(values).astype(np.int32)

    def keys(self, plays: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        """Member and song key of each play (-1: not in the tables, a cold start)."""
        return (
            self._lookup("members", plays["msno"], self.member_ids),
            self._lookup("songs", plays["song_id"], self.song_ids),
        )

    def warm_up(self) -> None:
        """Build the id lookup indexes and joinable tables now (a service does this before it
        says it is ready). The statistics need nothing built: their keys are sorted, and found
        by binary search."""
        self._index("members", self.member_ids)
        self._index("songs", self.song_ids)
        self._tables()

    def transform(self, plays: pa.Table) -> Features:
        """Model features (features.FEATURES, in order) of raw play rows (Kaggle's columns
        msno, song_id and the three source columns), and their flags (see `flags`)."""
        keys = self.keys(plays)
        return Features(self.model_features(plays, keys), _flags(keys))

    def flags(self, plays: pa.Table) -> dict[str, np.ndarray]:
        """Which plays' member or song it does not know (scored with the cold-start values:
        counts 0, target encodings at the prior)."""
        return _flags(self.keys(plays))

    def example(self) -> dict:
        """A play of the first member and song it knows, no source."""
        return {
            "msno": self.member_ids[0].as_py(),
            "song_id": self.song_ids[0].as_py(),
            **dict.fromkeys(features.SOURCE),
        }

    def model_features(self, plays: pa.Table, keys: tuple[np.ndarray, np.ndarray]) -> pd.DataFrame:
        """The model features of raw play rows whose member and song keys are known."""
        member_key, song_key = keys
        sources = plays.select(features.SOURCE)
        sources = pa.table(
            {c: _dictionary(sources[c]) for c in features.SOURCE}
        ).to_pandas()  # as preprocess reads them: Categoricals, no Python strings per row
        frame = features.join_plays(sources, member_key, song_key, *self._tables())
        return features.transform(frame, self.encoder)


def _flags(keys: tuple[np.ndarray, np.ndarray]) -> dict[str, np.ndarray]:
    return {"unknown_member": keys[0] < 0, "unknown_song": keys[1] < 0}


def _dictionary(values: pa.ChunkedArray) -> pa.ChunkedArray:
    return values if pa.types.is_dictionary(values.type) else pc.dictionary_encode(values)


def _compact(values: np.ndarray) -> np.ndarray:
    """Counts and sums of 0/1 targets are whole numbers: stored as uint32 (exact, half the
    bytes of float64) where they fit, else as they are."""
    whole = len(values) and values.min() >= 0 and values.max() < 2**32
    if whole and np.array_equal(values, np.rint(values)):
        return values.astype(np.uint32)
    return values


def _stats_table(stats: dict[str, features.KeyStats]) -> pa.Table:
    """stats.parquet: every statistic's slots in one long table, one statistic after the other:
    name, key (the slot itself where the key is its own slot), count and target sum. The last
    slot, always 0, is not stored."""
    sizes, keys, counts, sums = [], [], [], []
    for stat in stats.values():
        n = len(stat.counts) - 1
        key = np.arange(n, dtype=np.int64) if stat.index is None else stat.index.to_numpy()
        sizes.append(n)
        keys.append(key.astype(np.int64))
        counts.append(stat.counts[:n])
        sums.append(stat.sums[:n])
    codes = np.repeat(np.arange(len(stats), dtype=np.int8), sizes)
    return pa.table(
        {
            "name": pa.DictionaryArray.from_arrays(codes, pa.array(list(stats))),
            "key": np.concatenate(keys),
            "count": _compact(np.concatenate(counts)),
            "sum": _compact(np.concatenate(sums)),
        }
    )


def _spec(encoder: features.Encoder) -> dict:
    """encoder.json: everything of the encoder but its statistics' numbers."""
    return {
        "format": FORMAT,
        "features": features.FEATURES,
        "prior": encoder.prior,
        "smoothing": encoder.smoothing,
        "reserved_codes": {
            "unseen": features.UNSEEN,
            "missing": features.MISSING,
            "first": features.FIRST_CODE,
        },
        "vocabularies": encoder.vocabularies,
        "stats": {
            name: {"dense": stat.index is None, "keys_seen": stat.n_keys}
            for name, stat in encoder.stats.items()
        },
    }


# How save_* write a table to a path: write_parquet, or a background writer's (the stage's).
Write = Callable[[pa.Table, Path], None]


def save_attributes(
    folder: Path,
    member_ids: pa.ChunkedArray | pa.Array,
    member_attrs: pd.DataFrame,
    song_ids: pa.ChunkedArray | pa.Array,
    song_attrs: pd.DataFrame,
    write: Write = write_parquet,
) -> None:
    """members.parquet and songs.parquet: the ids, then the attributes. They do not depend on
    the fit, so preprocess writes them while it fits."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, ids, attrs in (
        ("members", member_ids, member_attrs),
        ("songs", song_ids, song_attrs),
    ):
        table = pa.Table.from_pandas(attrs, preserve_index=False)
        write(table.add_column(0, ID_COLUMNS[name], ids), folder / f"{name}.parquet")


def save_encoder(folder: Path, encoder: features.Encoder, write: Write = write_parquet) -> None:
    """encoder.json and stats.parquet: what the fit made."""
    folder.mkdir(parents=True, exist_ok=True)
    write_json(_spec(encoder), folder / "encoder.json")
    write(_stats_table(encoder.stats), folder / "stats.parquet")


def save(
    folder: Path,
    encoder: features.Encoder,
    member_ids: pa.ChunkedArray | pa.Array,
    member_attrs: pd.DataFrame,
    song_ids: pa.ChunkedArray | pa.Array,
    song_attrs: pd.DataFrame,
) -> None:
    """Write the featurizer's files into `folder` (each one atomically)."""
    save_encoder(folder, encoder)
    save_attributes(folder, member_ids, member_attrs, song_ids, song_attrs)


def load(folder: Path) -> Featurizer:
    """Read the featurizer's files; a missing or damaged one is a UserError naming it."""
    path = folder / "encoder.json"
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
        stats_spec = spec["stats"]
        vocabularies = spec["vocabularies"]
        prior, smoothing = float(spec["prior"]), float(spec["smoothing"])
    except FileNotFoundError:
        raise UserError(f"{path}: not found; rerun `dvc repro preprocess`") from None
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(f"{path}: not a featurizer spec ({type(err).__name__}: {err})") from None
    if spec.get("features") != features.FEATURES or sorted(vocabularies) != sorted(
        features.CATEGORICAL
    ):
        raise UserError(
            f"{path}: made for other features than this code's; rebuild it with this version "
            "(dvc repro)"
        )
    tables = {}
    for name, id_column in ID_COLUMNS.items():
        table = read_parquet(folder / f"{name}.parquet")
        tables[name] = (table[id_column].combine_chunks(), table.drop([id_column]).to_pandas())
    stats = _read_stats(folder / "stats.parquet", stats_spec)
    encoder = features.Encoder(vocabularies, prior, smoothing, stats)
    return Featurizer(encoder, *tables["members"], *tables["songs"])


def _read_stats(path: Path, spec: dict) -> dict[str, features.KeyStats]:
    table = read_parquet(path, read_dictionary=["name"])
    names = table["name"].combine_chunks()
    codes = names.indices.to_numpy()
    # Each statistic's rows are one run (see _stats_table): slices, no masks.
    starts = (
        np.flatnonzero(np.concatenate([[True], codes[1:] != codes[:-1]])) if len(codes) else []
    )
    runs = {
        names.dictionary[codes[start]].as_py(): (int(start), int(end))
        for start, end in zip(starts, [*starts[1:], len(codes)], strict=True)
    }
    stats = {}
    for name, layout in spec.items():
        start, end = runs.get(name, (0, 0))
        rows = table.slice(start, end - start)
        counts, sums = (np.zeros(end - start + 1) for _ in range(2))  # + the slot of unseen keys
        counts[:-1] = rows["count"].to_numpy()
        sums[:-1] = rows["sum"].to_numpy()
        index = None
        if not layout["dense"]:
            keys = rows["key"].to_numpy()
            if (np.diff(keys) <= 0).any():  # the lookups are binary searches
                raise UserError(
                    f"{path}: the keys of {name!r} are not sorted; rebuild it (dvc repro)"
                )
            index = pd.Index(keys)
        stats[name] = features.KeyStats(index, counts, sums)
    missing = set(features.STAT_KEYS) - set(stats)
    if missing:
        raise UserError(f"{path}: no statistics for {sorted(missing)}; rebuild it (dvc repro)")
    return stats
