"""The Kaggle KKBox raw tables and their contract: file names, columns in order, Arrow types,
the known category sets and the rules, declared once (cd4ml.contract's types); and `Play`, one
raw play as a caller of the service sends it.

Rules with a `quirk` label are the known quirks of the real data: counted in the report, never
fatal. The category sets are those of the real Kaggle files (train and test): a value outside
them is drift (counted, an anomaly above validate.max_new_category_share), not a failure.
"""

from __future__ import annotations

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from cd4ml.contract import (
    Column,
    Contract,
    Join,
    Table,
    ge,
    gt,
    in_range,
    isin,
    ne,
    not_missing,
    valid_date,
    zero_or_in_range,
)

TRAIN = "train.csv"
TEST = "test.csv"
MEMBERS = "members.csv"
SONGS = "songs.csv"
SONG_EXTRA = "song_extra_info.csv"
# Not part of Kaggle's data: the generator's true probability per train row, same row order.
TRUTH = "train_truth.csv"

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

_STR = pa.string()
_DATE = "must be a valid YYYYMMDD date"

# A play's context: how the member came to the song (an empty field is missing).
SOURCES = {
    "source_system_tab": Column(
        _STR,
        nullable=True,
        categories=SOURCE_SYSTEM_TABS,
        rules=(ne("null", quirk="literal 'null' tab"),),
    ),
    "source_screen_name": Column(_STR, nullable=True, categories=SOURCE_SCREEN_NAMES),
    "source_type": Column(_STR, nullable=True, categories=SOURCE_TYPES),
}

CONTRACT = Contract(
    tables={
        TRAIN: Table(
            {
                "msno": Column(_STR),
                "song_id": Column(_STR),
                **SOURCES,
                "target": Column(pa.int8(), rules=(isin([0, 1], error="must be 0 or 1"),)),
            },
            dictionary=True,
        ),
        TEST: Table(
            {
                "id": Column(pa.int32(), unique=True, rules=(ge(0, error="must be >= 0"),)),
                "msno": Column(_STR),
                "song_id": Column(_STR),
                **SOURCES,
            },
            dictionary=True,
        ),
        MEMBERS: Table(
            {
                "msno": Column(_STR, unique=True),
                "city": Column(pa.int16(), categories=CITIES),
                "bd": Column(
                    pa.int16(),
                    rules=(
                        ne(0, quirk="bd 0 (age not given)"),
                        # The plausible ages of kkbox.features.clean_bd.
                        zero_or_in_range(5, 80, quirk="bd outlier (not 0, outside 5..80)"),
                    ),
                ),
                "gender": Column(_STR, nullable=True, categories=GENDERS),
                "registered_via": Column(pa.int16(), categories=REGISTERED_VIA),
                "registration_init_time": Column(pa.int32(), rules=(valid_date(error=_DATE),)),
                "expiration_date": Column(
                    pa.int32(),
                    rules=(valid_date(error=_DATE), ne(19700101, quirk="expiration 19700101")),
                ),
            }
        ),
        SONGS: Table(
            {
                "song_id": Column(_STR, unique=True),
                "song_length": Column(
                    pa.int32(), rules=(gt(0, error="must be > 0 (milliseconds)"),)
                ),
                "genre_ids": Column(
                    _STR, nullable=True, rules=(not_missing(quirk="genre missing"),)
                ),
                "artist_name": Column(_STR, nullable=True),
                "composer": Column(_STR, nullable=True),
                "lyricist": Column(_STR, nullable=True),
                "language": Column(
                    pa.float32(),
                    nullable=True,
                    categories=LANGUAGES,
                    rules=(ne(-1, quirk="language -1 (unknown)"),),
                ),
            }
        ),
        SONG_EXTRA: Table(
            {
                "song_id": Column(_STR),
                "name": Column(_STR, nullable=True),
                "isrc": Column(_STR, nullable=True),
            }
        ),
        TRUTH: Table(
            {
                "target_probability": Column(
                    pa.float64(), rules=(in_range(0, 1, error="must be in [0, 1]"),)
                )
            },
            required=False,
        ),
    },
    examples=TRAIN,
    target="target",
    batch=TEST,
    id="id",
    truth=TRUTH,
    joins=(
        Join(TRAIN, "msno", MEMBERS),
        Join(TRAIN, "song_id", SONGS),
        Join(TEST, "msno", MEMBERS),
        Join(TEST, "song_id", SONGS),
    ),
)


class Play(BaseModel):
    """One raw play to score, Kaggle's columns: the member and the song are required, a source
    may be null (or empty)."""

    model_config = ConfigDict(extra="ignore")

    msno: str = Field(min_length=1, description="the member's id")
    song_id: str = Field(min_length=1, description="the song's id")
    source_system_tab: str | None = Field(description="the tab the play came from")
    source_screen_name: str | None = Field(description="the screen the play came from")
    source_type: str | None = Field(description="the kind of source (playlist, album, radio...)")
