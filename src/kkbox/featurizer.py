"""The fitted featurizer as files: what turns a raw play row into the model's features.

The preprocess stage writes it; the release bundle carries it, and scoring a raw row runs the
same functions of kkbox.features that made the training features. Files (no pickle):
  encoder.json      vocabularies, reserved codes, smoothing, prior, the statistics' layout
  members.parquet   msno and the member attributes, in the order the member keys number them
  songs.parquet     song_id and the song attributes (artist_key included), likewise
  stats.parquet     counts and target sums per key of every statistic, one row per slot
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from kkbox import features
from kkbox.io import UserError, read_parquet, write_json, write_parquet

FILES = ("encoder.json", "members.parquet", "songs.parquet", "stats.parquet")
ID_COLUMNS = {"members": "msno", "songs": "song_id"}
FORMAT = 1


@dataclass
class Featurizer:
    """The encoder fitted on the training part and the member and song tables it joins."""

    encoder: features.Encoder
    member_ids: pa.Array
    member_attrs: pd.DataFrame
    song_ids: pa.Array
    song_attrs: pd.DataFrame

    def keys(self, plays: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        """Member and song key of each play (-1: not in the tables, a cold start)."""
        return (
            features.keys_of(plays["msno"], self.member_ids),
            features.keys_of(plays["song_id"], self.song_ids),
        )

    def transform(self, plays: pa.Table) -> pd.DataFrame:
        """Model features (features.FEATURES, in order) of raw play rows: Kaggle's columns
        msno, song_id and the three source columns."""
        member_key, song_key = self.keys(plays)
        sources = plays.select(features.SOURCE)
        sources = pa.table(
            {c: _dictionary(sources[c]) for c in features.SOURCE}
        ).to_pandas()  # as preprocess reads them: Categoricals, no Python strings per row
        frame = features.join_plays(
            sources, member_key, song_key, self.member_attrs, self.song_attrs
        )
        return features.transform(frame, self.encoder)


def _dictionary(values: pa.ChunkedArray) -> pa.ChunkedArray:
    return values if pa.types.is_dictionary(values.type) else pc.dictionary_encode(values)


def _stats_table(stats: dict[str, features.KeyStats]) -> pa.Table:
    """Every statistic's slots in one long table: name, key (the slot itself where the key is
    its own slot), count and target sum. The last slot, always 0, is not stored."""
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
            "count": np.concatenate(counts),
            "sum": np.concatenate(sums),
        }
    )


def save(
    folder: Path,
    encoder: features.Encoder,
    member_ids: pa.ChunkedArray | pa.Array,
    member_attrs: pd.DataFrame,
    song_ids: pa.ChunkedArray | pa.Array,
    song_attrs: pd.DataFrame,
) -> None:
    """Write the featurizer's files into `folder` (each one atomically)."""
    folder.mkdir(parents=True, exist_ok=True)
    spec = {
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
    write_json(spec, folder / "encoder.json")
    for name, ids, attrs in (
        ("members", member_ids, member_attrs),
        ("songs", song_ids, song_attrs),
    ):
        table = pa.Table.from_pandas(attrs, preserve_index=False)
        write_parquet(table.add_column(0, ID_COLUMNS[name], ids), folder / f"{name}.parquet")
    write_parquet(_stats_table(encoder.stats), folder / "stats.parquet")


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
    code = {name: i for i, name in enumerate(names.dictionary.to_pylist())}
    per_row = names.indices.to_numpy()
    columns = {c: table[c].to_numpy() for c in ("key", "count", "sum")}
    stats = {}
    for name, layout in spec.items():
        rows = per_row == code.get(name, -1)
        counts = np.append(columns["count"][rows], 0.0)
        sums = np.append(columns["sum"][rows], 0.0)
        index = None if layout["dense"] else pd.Index(columns["key"][rows])
        stats[name] = features.KeyStats(index, counts, sums)
    missing = set(features.STAT_KEYS) - set(stats)
    if missing:
        raise UserError(f"{path}: no statistics for {sorted(missing)}; rebuild it (dvc repro)")
    return stats
