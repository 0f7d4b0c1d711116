"""The Kaggle KKBox raw tables: file names, column order, read dtypes and the declared schema.

`TABLES` is how the CSVs are read (column order and Arrow types). `COLUMNS` is the data contract
on top of it (what TFDV's schema is to TFX): nullability, keys, value domains and the known
category sets, as plain data. Rules with a `quirk` label are the known quirks of the real data:
counted in the report, never fatal. `kkbox.validation` runs the contract vectorised on the Arrow
tables (no pandas): the declaration is the only place a rule is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
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

# The category sets of the real Kaggle files (train and test). A value outside them is drift
# (counted, and an anomaly above validate.max_new_category_share), not a hard failure.
SOURCE_SYSTEM_TABS = (
    "my library",
    "discover",
    "search",
    "radio",
    "listen with",
    "explore",
    "notification",
    "settings",
    "null",
)
SOURCE_SCREEN_NAMES = (
    "Local playlist more",
    "Online playlist more",
    "Radio",
    "Album more",
    "Search",
    "Artist more",
    "Discover Feature",
    "Discover Chart",
    "Others profile more",
    "Discover Genre",
    "My library",
    "Explore",
    "Unknown",
    "Discover New",
    "Search Trends",
    "Search Home",
    "My library_Search",
    "Self profile more",
    "Concert",
    "Payment",
    "People local",
    "People global",
)
SOURCE_TYPES = (
    "local-library",
    "online-playlist",
    "local-playlist",
    "radio",
    "album",
    "top-hits-for-artist",
    "song",
    "song-based-playlist",
    "listen-with",
    "topic-article-playlist",
    "artist",
    "my-daily-playlist",
)
CITIES = (1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22)
GENDERS = ("female", "male")
REGISTERED_VIA = (3, 4, 7, 9, 13)
LANGUAGES = (-1.0, 3.0, 10.0, 17.0, 24.0, 31.0, 38.0, 45.0, 52.0, 59.0)

_SOURCE_CATEGORIES = {
    "source_system_tab": SOURCE_SYSTEM_TABS,
    "source_screen_name": SOURCE_SCREEN_NAMES,
    "source_type": SOURCE_TYPES,
}
# Categorical columns: their known values, and their frequencies in the drift profile.
CATEGORIES: dict[str, dict[str, tuple]] = {
    TRAIN: _SOURCE_CATEGORIES,
    TEST: _SOURCE_CATEGORIES,
    MEMBERS: {"city": CITIES, "gender": GENDERS, "registered_via": REGISTERED_VIA},
    SONGS: {"language": LANGUAGES},
}

# Referential coverage: (table, column) rows should find their key in the other table.
_DATE_ERROR = "must be a valid YYYYMMDD date"

JOINS: tuple[tuple[str, str, str], ...] = (
    (TRAIN, "msno", MEMBERS),
    (TRAIN, "song_id", SONGS),
    (TEST, "msno", MEMBERS),
    (TEST, "song_id", SONGS),
)

DATE_YEARS = (1900, 2100)
_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


def is_yyyymmdd(values: np.ndarray, years: tuple[int, int] = DATE_YEARS) -> np.ndarray:
    """Element-wise: is each integer a real calendar date written as YYYYMMDD?"""
    v = np.asarray(values, dtype=np.int64)
    year, month, day = v // 10_000, v // 100 % 100, v % 100
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    last_day = _DAYS_IN_MONTH[np.clip(month, 0, 12)] + (leap & (month == 2))
    in_years = (year >= years[0]) & (year <= years[1])
    return in_years & (month >= 1) & (month <= 12) & (day >= 1) & (day <= last_day)


@dataclass(frozen=True)
class Rule:
    """One check of a column's values (names and statistics follow pandera's checks).

    A hard rule has an `error` (it fails the stage); a soft one a `quirk` label (it is counted).
    Missing values pass every rule but `not_missing`.
    """

    kind: str
    stats: dict[str, Any]
    error: str | None = None
    quirk: str | None = None

    @property
    def soft(self) -> bool:
        return self.quirk is not None


@dataclass(frozen=True)
class Column:
    """The contract of one column beyond its dtype (in TABLES)."""

    nullable: bool = False
    unique: bool = False
    rules: tuple[Rule, ...] = field(default_factory=tuple)


def isin(values: tuple | list, **label: str) -> Rule:
    return Rule("isin", {"allowed_values": list(values)}, **label)


def ne(value: Any, **label: str) -> Rule:
    return Rule("not_equal_to", {"value": value}, **label)


def gt(value: Any, **label: str) -> Rule:
    return Rule("greater_than", {"min_value": value}, **label)


def ge(value: Any, **label: str) -> Rule:
    return Rule("greater_than_or_equal_to", {"min_value": value}, **label)


def in_range(low: Any, high: Any, **label: str) -> Rule:
    stats = {"min_value": low, "max_value": high, "include_min": True, "include_max": True}
    return Rule("in_range", stats, **label)


def zero_or_in_range(low: Any, high: Any, **label: str) -> Rule:
    return Rule("zero_or_in_range", {"min_value": low, "max_value": high}, **label)


def valid_date(**label: str) -> Rule:
    return Rule("valid_yyyymmdd", {"years": list(DATE_YEARS)}, **label)


def not_missing(**label: str) -> Rule:
    return Rule("not_missing", {}, **label)


def _known(table: str, name: str) -> Rule:
    return isin(CATEGORIES[table][name], quirk="unknown category")


def _sources(table: str) -> dict[str, Column]:
    return {
        "source_system_tab": Column(
            nullable=True,
            rules=(
                _known(table, "source_system_tab"),
                ne("null", quirk="literal 'null' tab"),
            ),
        ),
        "source_screen_name": Column(nullable=True, rules=(_known(table, "source_screen_name"),)),
        "source_type": Column(nullable=True, rules=(_known(table, "source_type"),)),
    }


COLUMNS: dict[str, dict[str, Column]] = {
    TRAIN: {
        "msno": Column(),
        "song_id": Column(),
        **_sources(TRAIN),
        "target": Column(rules=(isin([0, 1], error="must be 0 or 1"),)),
    },
    TEST: {
        "id": Column(unique=True, rules=(ge(0, error="must be >= 0"),)),
        "msno": Column(),
        "song_id": Column(),
        **_sources(TEST),
    },
    MEMBERS: {
        "msno": Column(unique=True),
        "city": Column(rules=(_known(MEMBERS, "city"),)),
        "bd": Column(
            rules=(
                ne(0, quirk="bd 0 (age not given)"),
                # The plausible ages of features.clean_bd.
                zero_or_in_range(5, 80, quirk="bd outlier (not 0, outside 5..80)"),
            )
        ),
        "gender": Column(nullable=True, rules=(_known(MEMBERS, "gender"),)),
        "registered_via": Column(rules=(_known(MEMBERS, "registered_via"),)),
        "registration_init_time": Column(rules=(valid_date(error=_DATE_ERROR),)),
        "expiration_date": Column(
            rules=(
                valid_date(error=_DATE_ERROR),
                ne(19700101, quirk="expiration 19700101"),
            )
        ),
    },
    SONGS: {
        "song_id": Column(unique=True),
        "song_length": Column(rules=(gt(0, error="must be > 0 (milliseconds)"),)),
        "genre_ids": Column(nullable=True, rules=(not_missing(quirk="genre missing"),)),
        "artist_name": Column(nullable=True),
        "composer": Column(nullable=True),
        "lyricist": Column(nullable=True),
        "language": Column(
            nullable=True,
            rules=(_known(SONGS, "language"), ne(-1, quirk="language -1 (unknown)")),
        ),
    },
    SONG_EXTRA: {
        "song_id": Column(),
        "name": Column(nullable=True),
        "isrc": Column(nullable=True),
    },
    TRUTH: {
        "target_probability": Column(rules=(in_range(0, 1, error="must be in [0, 1]"),)),
    },
}
