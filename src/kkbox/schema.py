"""The Kaggle KKBox raw tables: file names, column order and the dtypes they are read with."""

from __future__ import annotations

import pyarrow as pa

TRAIN = "train.csv"
TEST = "test.csv"
MEMBERS = "members.csv"
SONGS = "songs.csv"
SONG_EXTRA = "song_extra_info.csv"
# Not part of Kaggle's data: the generator's true probability per train row, same row order.
TRUTH = "train_truth.csv"

_STR = pa.string()
SOURCE_COLUMNS = {
    "source_system_tab": _STR,
    "source_screen_name": _STR,
    "source_type": _STR,
}

TABLES: dict[str, dict[str, pa.DataType]] = {
    TRAIN: {"msno": _STR, "song_id": _STR, **SOURCE_COLUMNS, "target": pa.int8()},
    TEST: {"id": pa.int32(), "msno": _STR, "song_id": _STR, **SOURCE_COLUMNS},
    MEMBERS: {
        "msno": _STR,
        "city": pa.int16(),
        "bd": pa.int16(),
        "gender": _STR,
        "registered_via": pa.int16(),
        "registration_init_time": pa.int32(),
        "expiration_date": pa.int32(),
    },
    SONGS: {
        "song_id": _STR,
        "song_length": pa.int32(),
        "genre_ids": _STR,
        "artist_name": _STR,
        "composer": _STR,
        "lyricist": _STR,
        "language": pa.float32(),
    },
    SONG_EXTRA: {"song_id": _STR, "name": _STR, "isrc": _STR},
    TRUTH: {"target_probability": pa.float64()},
}

REQUIRED = (TRAIN, TEST, MEMBERS, SONGS, SONG_EXTRA)
OPTIONAL = (TRUTH,)
