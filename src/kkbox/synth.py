"""A schema-faithful synthetic KKBox data set with known, learnable signal (`make data`).

Every table has Kaggle's columns, order, encodings and quirks. The target of each train row is
drawn from a known probability built from member taste (genres, artists, language), song
appeal, member bias and listening context, so the pipeline can be scored against the best
possible model (the oracle AUC of that probability).
"""

from __future__ import annotations

import base64
import functools
import logging
import operator
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from cd4ml.io import atomic_dir, write_csv
from cd4ml.params import Section, Seed

log = logging.getLogger(__name__)

_SHARE = Annotated[float, Field(ge=0, le=0.5)]
_TREND = Annotated[float, Field(ge=0, le=3)]


class Generate(Section):
    """params.yaml's generate: the seed and the time effects of the synthetic data."""

    seed: Seed
    positive_rate: Annotated[float, Field(gt=0, lt=1)]
    new_member_rows_eval: _SHARE
    new_member_rows_test: _SHARE
    new_song_rows_eval: _SHARE
    new_song_rows_test: _SHARE
    song_trend: _TREND
    release_fade: Annotated[float, Field(gt=0, le=1)]
    member_trend: _TREND
    source_drift: _TREND

    def time_effects(self) -> dict[str, float]:
        """The keys of TimeEffects (every key but seed and positive_rate)."""
        return self.model_dump(exclude={"seed", "positive_rate"})


@dataclass(frozen=True)
class Scale:
    """Table sizes of one data scale."""

    members: int
    songs: int
    train: int
    test: int


SCALES: dict[str, Scale] = {
    "tiny": Scale(members=400, songs=4_000, train=30_000, test=8_000),
    "small": Scale(members=3_000, songs=40_000, train=300_000, test=100_000),
    "medium": Scale(members=12_000, songs=400_000, train=2_000_000, test=700_000),
    "full": Scale(members=34_403, songs=2_296_320, train=7_377_418, test=2_556_790),
}

# Context of a play: (source_system_tab, source_screen_name, source_type, weight, effect on the
# log-odds of a replay). Replays from the user's own library are far likelier than from radio.
SOURCES: list[tuple[str | None, str | None, str | None, float, float]] = [
    ("my library", "Local playlist more", "local-library", 0.30, 0.90),
    ("my library", "Local playlist more", "local-playlist", 0.08, 0.70),
    ("my library", "My library", "local-library", 0.03, 0.80),
    ("my library", "My library_Search", "local-library", 0.01, 0.75),
    ("discover", "Online playlist more", "online-playlist", 0.12, -0.25),
    ("discover", "Discover Feature", "online-playlist", 0.03, -0.35),
    ("discover", "Discover Chart", "top-hits-for-artist", 0.015, -0.30),
    ("discover", "Discover Genre", "online-playlist", 0.01, -0.40),
    ("discover", "Discover New", "online-playlist", 0.005, -0.50),
    ("discover", "Album more", "album", 0.05, 0.10),
    ("discover", "Artist more", "top-hits-for-artist", 0.03, 0.00),
    ("discover", None, "song-based-playlist", 0.02, -0.30),
    ("search", "Search", "song", 0.05, 0.35),
    ("search", "Search Trends", "song", 0.008, 0.10),
    ("search", "Search Home", "album", 0.005, 0.20),
    ("radio", "Radio", "radio", 0.07, -0.95),
    ("listen with", "Others profile more", "listen-with", 0.04, -0.70),
    ("listen with", "Unknown", "listen-with", 0.01, -0.60),
    ("explore", "Explore", "topic-article-playlist", 0.015, -0.30),
    ("explore", "Explore", "my-daily-playlist", 0.005, -0.20),
    ("notification", "Payment", "artist", 0.002, -0.40),
    ("notification", "Unknown", "song", 0.002, -0.20),
    ("settings", "Self profile more", "local-library", 0.002, 0.20),
    ("settings", "Concert", "artist", 0.001, -0.10),
    ("null", "People local", "song", 0.002, -0.10),
    ("null", "People global", "online-playlist", 0.002, -0.15),
    ("my library", None, "local-library", 0.005, 0.60),
    (None, None, None, 0.004, 0.00),
    ("discover", "Unknown", None, 0.003, -0.20),
]

GENRES = [
    465,
    958,
    1609,
    2022,
    2122,
    1259,
    921,
    1152,
    786,
    359,
    139,
    726,
    1011,
    444,
    437,
    1616,
    2130,
    940,
    423,
    458,
    1572,
    388,
    352,
    275,
    242,
    873,
    2058,
    1955,
    829,
    947,
    691,
    864,
    2157,
    1180,
    2107,
    880,
    1138,
    374,
    1145,
    381,
]
# (language code, share of songs, popularity multiplier): Taiwanese listeners favour Mandarin (3).
LANGUAGES = [
    (52.0, 0.42, 0.6),
    (-1.0, 0.27, 0.4),
    (3.0, 0.13, 4.0),
    (17.0, 0.06, 1.0),
    (31.0, 0.05, 1.6),
    (24.0, 0.03, 1.2),
    (10.0, 0.02, 0.8),
    (59.0, 0.005, 0.5),
    (45.0, 0.009, 0.5),
    (38.0, 0.006, 0.4),
]
CITIES = [1, 13, 5, 4, 15, 22, 6, 14, 12, 8, 9, 11, 18, 21, 3, 10, 17, 7, 16, 20, 19]
REGISTERED_VIA = [(7, 0.44), (9, 0.23), (4, 0.26), (3, 0.065), (13, 0.005)]
# Shares of members who join and of songs released during the period (train and test).
NEW_MEMBERS = 0.3
NEW_SONGS = 0.12
_ONLINE = (
    "online-playlist",
    "radio",
    "listen-with",
    "song-based-playlist",
    "topic-article-playlist",
    "my-daily-playlist",
    "top-hits-for-artist",
)
ISRC_COUNTRIES = ["TW", "US", "GB", "JP", "KR", "HK", "CN", "DE", "FR", "SE", "QM", "QZ"]

_FAMILY = "陳林黃張李王吳劉蔡楊許鄭謝郭洪曾邱廖賴周徐蘇葉莊呂江何蕭羅高"
_GIVEN = "杰倫家豪志明俊宏建華文雅婷淑芬美玲怡君佳穎宗翰承恩柏翰冠宇詩涵心怡子晴"
_LATIN = [
    "The",
    "Black",
    "Blue",
    "Night",
    "Moon",
    "Star",
    "Lost",
    "Young",
    "Wild",
    "Golden",
    "Electric",
    "Silver",
    "Summer",
    "Ghost",
    "Paper",
    "River",
    "Neon",
    "Sky",
    "Fire",
    "Echo",
    "Love",
    "Dream",
    "City",
    "Heart",
    "Rain",
    "Sun",
    "Ocean",
    "Stone",
    "Velvet",
]
_HANGUL = "민지서연하준도윤수아지호예은현우채원"
_KANA = "さくらはるかゆいあおいりんかなみつき"


def kaggle_ids(rng: np.random.Generator, n: int) -> pa.Array:
    """Return n unique 44-character base64 ids (32 random bytes, '=' padded) like Kaggle's."""
    raw = np.zeros((n, 33), dtype=np.uint8)
    raw[:, :32] = rng.integers(0, 256, size=(n, 32), dtype=np.uint8)
    # 33 bytes are 11 whole base64 groups: encoding all ids at once keeps each in its 44 chars.
    chars = np.frombuffer(base64.b64encode(raw.tobytes()), dtype=np.uint8).reshape(n, 44).copy()
    chars[:, 43] = ord("=")
    # 256 random bits never collide in practice, but keys must be unique: distinct 8-byte
    # prefixes prove it cheaply.
    prefixes = raw[:, :8].copy().view(np.uint64).ravel()
    if len(np.unique(prefixes)) != n and len(np.unique(raw, axis=0)) != n:
        raise RuntimeError("id collision; change generate.seed")
    offsets = np.arange(0, 44 * (n + 1), 44, dtype=np.int32)
    return pa.Array.from_buffers(
        pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(chars)]
    )


def _zero_padded(width: int) -> pa.Array:
    return pa.array([f"{i:0{width}d}" for i in range(10**width)], pa.string())


_ZERO_PADDED_2 = _zero_padded(2)


def _pick(rng: np.random.Generator, values: list, weights: list[float], n: int) -> np.ndarray:
    p = np.asarray(weights, dtype=float)
    return np.asarray(values, dtype=object)[rng.choice(len(values), size=n, p=p / p.sum())]


def _dates(rng: np.random.Generator, start: int, end: int, n: int) -> np.ndarray:
    """Random YYYYMMDD ints between two years (inclusive start, exclusive end)."""
    lo = np.datetime64(f"{start}-01-01")
    hi = np.datetime64(f"{end}-01-01")
    days = lo + rng.integers(0, int((hi - lo).astype(int)), size=n).astype("timedelta64[D]")
    ymd = days.astype(str)
    return np.char.replace(ymd, "-", "").astype(np.int64)


def _concat(*parts: pa.Array | str) -> pa.Array:
    """Element-wise string concatenation (Arrow: no Python string per row)."""
    return pc.binary_join_element_wise(*parts, "")


def _set_missing(values: pa.Array, missing: np.ndarray) -> pa.Array:
    return pc.if_else(pa.array(missing), pa.scalar(None, values.type), values)


def _names(rng: np.random.Generator, n: int) -> pa.Array:
    """Person / band names: Chinese, English, Korean, Japanese, some quoted or with commas."""
    kind = rng.choice(5, size=n, p=[0.5, 0.3, 0.08, 0.07, 0.05])

    def draw(alphabet: list[str] | str, k: int) -> list[pa.Array]:
        pool = pa.array(list(alphabet), pa.string())
        return [pool.take(rng.integers(0, len(pool), n)) for _ in range(k)]

    (fam,) = draw(_FAMILY, 1)
    g0, g1 = draw(_GIVEN, 2)
    l0, l1 = draw(_LATIN, 2)
    h0, h1, h2 = draw(_HANGUL, 3)
    k0, k1, k2, k3 = draw(_KANA, 4)
    variants = [
        _concat(fam, g0, g1),
        _concat(l0, " ", l1),
        _concat(h0, h1, h2),
        _concat(k0, k1, k2, k3),
        _concat(fam, g0, ' ("', l0, '", ', l1, ")"),
    ]
    return pc.choose(pa.array(kind), *variants)


def _pipe_join(
    rng: np.random.Generator, pool: pa.Array, n: int, p_missing: float, p_multi: float
) -> pa.Array:
    """Pipe-separated picks from a pool, missing (null) with probability p_missing."""
    first = pool.take(rng.integers(0, len(pool), n))
    second = pool.take(rng.integers(0, len(pool), n))
    multi = rng.random(n) < p_multi
    out = pc.if_else(pa.array(multi), _concat(first, "|", second), first)
    return _set_missing(out, rng.random(n) < p_missing)


def make_members(rng: np.random.Generator, n: int) -> tuple[dict[str, np.ndarray], dict]:
    """members.csv columns plus the hidden member traits that drive the target."""
    msno = kaggle_ids(rng, n)
    city_w = np.r_[56.0, np.full(len(CITIES) - 1, 44.0 / (len(CITIES) - 1))]
    city = _pick(rng, CITIES, list(city_w), n).astype(np.int64)
    blank = rng.random(n) < 0.58  # in Kaggle, members without an age also lack a gender
    age = np.clip(rng.normal(28, 8, n).round(), 12, 70).astype(np.int64)
    bd = np.where(blank, 0, age)
    odd = rng.random(n) < 0.004
    bd[odd] = _pick(rng, [-43, 144, 1051, 1030, -38, 931, 105], [1] * 7, int(odd.sum()))
    gender = _pick(rng, ["female", "male"], [0.51, 0.49], n)
    gender[blank & (rng.random(n) < 0.97)] = None
    city[blank & (rng.random(n) < 0.9)] = 1
    via, via_w = zip(*REGISTERED_VIA, strict=True)
    registered_via = _pick(rng, list(via), list(via_w), n).astype(np.int64)
    reg = _dates(rng, 2004, 2018, n)
    expiration = _dates(rng, 2017, 2021, n)
    expiration = np.maximum(expiration, reg)
    expiration[rng.random(n) < 0.0008] = 19700101
    columns = {
        "msno": msno,
        "city": city,
        "bd": bd,
        "gender": gender,
        "registered_via": registered_via,
        "registration_init_time": reg,
        "expiration_date": expiration,
    }
    traits = {
        "bias": rng.normal(0.0, 1.0, n) + 0.25 * (registered_via == 9) - 0.2 * (bd == 0),
        "activity": rng.lognormal(0.0, 1.1, n),
        "genres": rng.choice(len(GENRES), size=(n, 2), p=_zipf(len(GENRES), 0.9)),
        "language": _pick(rng, [3.0, 52.0, 31.0, 17.0, -1.0], [0.55, 0.25, 0.1, 0.05, 0.05], n),
        "source_mix": rng.dirichlet(np.array([s[3] for s in SOURCES]) * 20, size=n),
        # Members who join during the period: when, as a share of it (0: there from the start).
        "entry": np.where(rng.random(n) < NEW_MEMBERS, rng.random(n), 0.0),
        "trend": rng.normal(0.0, 1.0, n),
    }
    return columns, traits


def _zipf(n: int, a: float) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1) ** a
    return w / w.sum()


def make_songs(
    rng: np.random.Generator, n: int
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict]:
    """songs.csv and song_extra_info.csv columns plus hidden song traits."""
    song_id = kaggle_ids(rng, n)
    n_artists = max(50, n // 7)
    artists = _names(rng, n_artists)
    artists = pa.concat_arrays([pa.array(["Various Artists"]), artists.slice(1)])
    artist_pop = rng.pareto(1.2, n_artists) + 0.05
    artist_appeal = rng.normal(0.0, 0.6, n_artists)
    artist = rng.choice(n_artists, size=n, p=_zipf(n_artists, 0.6))
    lang_codes, lang_share, lang_pop = (np.array(x) for x in zip(*LANGUAGES, strict=True))
    lang_idx = rng.choice(len(lang_codes), size=n, p=lang_share / lang_share.sum())
    language = lang_codes[lang_idx].astype(np.float64)
    language[rng.random(n) < 2e-6] = np.nan
    genre = rng.choice(len(GENRES), size=n, p=_zipf(len(GENRES), 1.1))
    second = rng.choice(len(GENRES), size=n, p=_zipf(len(GENRES), 1.1))
    gstr = pa.array([str(g) for g in GENRES], pa.string())
    genre_ids = gstr.take(genre)
    multi = (rng.random(n) < 0.064) & (second != genre)
    genre_ids = pc.if_else(pa.array(multi), _concat(genre_ids, "|", gstr.take(second)), genre_ids)
    no_genre = rng.random(n) < 0.02
    genre_ids = _set_missing(genre_ids, no_genre)
    people = _names(rng, max(100, n // 10))
    composer = _pipe_join(rng, people, n, 0.42, 0.15)
    lyricist = _pipe_join(rng, people, n, 0.73, 0.08)
    length = np.clip(rng.lognormal(np.log(234_000), 0.32, n), 1_500, 3_600_000).astype(np.int64)
    popularity = artist_pop[artist] * rng.lognormal(0, 1.3, n) * lang_pop[lang_idx]
    # Songs released during the period: when, as a share of it (0: in the catalogue already).
    released = np.where(rng.random(n) < NEW_SONGS, rng.random(n), 0.0)
    year = np.where(released > 0, 17, rng.integers(0, 17, n))
    registrants = pa.array(["UM7", "A16", "B08", "G01", "H23", "SB1", "EM0", "W17"])
    isrc = _concat(
        pa.array(ISRC_COUNTRIES).take(rng.integers(0, len(ISRC_COUNTRIES), n)),
        registrants.take(rng.integers(0, len(registrants), n)),
        _ZERO_PADDED_2.take(year),
        _zero_padded(5).take(rng.integers(0, 100_000, n)),
    )
    isrc = _set_missing(isrc, rng.random(n) < 0.06)
    titles = _names(rng, n)
    columns = {
        "song_id": song_id,
        "song_length": length,
        "genre_ids": genre_ids,
        "artist_name": artists.take(artist),
        "composer": composer,
        "lyricist": lyricist,
        "language": language,
    }
    extra = {"song_id": song_id, "name": titles, "isrc": isrc}
    zpop = (np.log(popularity) - np.log(popularity).mean()) / np.log(popularity).std()
    traits = {
        "artist": artist,
        "genre": np.where(no_genre, -1, genre),
        "language": language,
        "popularity": popularity,
        "released": released,
        "trend": rng.normal(0.0, 1.0, n),
        "appeal": 0.45 * zpop + artist_appeal[artist] + rng.normal(0.0, 0.35, n),
        "n_artists": n_artists,
    }
    return columns, extra, traits


def _sample_weighted(rng: np.random.Generator, cum: np.ndarray, n: int) -> np.ndarray:
    """Indices drawn with probability proportional to the weights whose cumsum is `cum`."""
    u = rng.random(n) * cum[-1]
    # Sorted queries walk `cum` in order: several times faster than random ones, same result.
    order = np.argsort(u)
    picked = np.empty(n, dtype=np.int64)
    picked[order] = np.searchsorted(cum, u[order], side="right")
    return picked.clip(0, len(cum) - 1)


def _row_choice(rng: np.random.Generator, probs: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """For each row r, one category drawn from the distribution probs[rows[r]]."""
    k = probs.shape[1]
    flat = np.cumsum(probs, axis=1).ravel()
    u = rng.random(len(rows))
    # The category is the number of cumulative probabilities below u: a binary search over each
    # row's sorted cumsum, vectorised over rows (5 steps for 29 sources).
    base = rows * k - 1
    count = np.zeros(len(rows), dtype=np.int64)
    step = 1 << (int(k).bit_length() - 1)
    while step:
        candidate = count + step
        ok = candidate <= k
        ok[ok] = flat[base[ok] + candidate[ok]] < u[ok]
        count = np.where(ok, candidate, count)
        step >>= 1
    return count.clip(0, k - 1)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def logit_offset(logit: np.ndarray, positive_rate: float) -> float:
    """The shift of `logit` that makes the mean of sigmoid(logit + shift) `positive_rate`.

    0.5 gives 0: the logit stays centred on its median, which keeps every seed's data byte for
    byte as it was before this parameter (mean probability 0.497 to 0.507, seed 2017's scales)."""
    if not 0.0 < positive_rate < 1.0:
        raise ValueError(f"positive_rate must be in (0, 1), got {positive_rate}")
    if positive_rate == 0.5:
        return 0.0
    # The mean probability grows with the shift: bisect, a fixed number of steps (deterministic).
    lo, hi = -40.0, 40.0
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if _sigmoid(logit + mid).mean() < positive_rate:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class TimeEffects:
    """How the plays drift over the period (params.yaml's generate keys of the same names; these
    defaults are params.yaml's, a test keeps them equal). Times are in train periods: train.csv
    spans [0, 1), test.csv [1, 1 + test rows / train rows)."""

    new_member_rows_eval: float = 0.03
    new_member_rows_test: float = 0.08
    new_song_rows_eval: float = 0.12
    new_song_rows_test: float = 0.22
    song_trend: float = 1.0
    release_fade: float = 0.15
    member_trend: float = 1.0
    source_drift: float = 0.5


# Plays are drawn epoch by epoch; members and songs enter in windows of ENTRY_WINDOW epochs
# (a fifth of the train period: the eval split's length, split.eval_fraction) and the test
# period is one more window, so each window's newcomers are unseen in every earlier row.
EPOCH = 0.05
ENTRY_WINDOW = 4
TRAIN_EPOCHS = 20
RELEASE_BOOST = 3.0  # a just-released song is played 1 + 3 times as often as later on
# Sign of each source's drift: the own library loses share to online playlists and radio.
SOURCE_DRIFT = np.array(
    [
        -1.0 if s[2] in ("local-library", "local-playlist") else 1.0 if s[2] in _ONLINE else 0.0
        for s in SOURCES
    ]
)


def _epoch_of(when: np.ndarray) -> np.ndarray:
    """The epoch of each time: train times [0, 1) fill epochs 0..19, test times the rest."""
    train = np.minimum((when * TRAIN_EPOCHS).astype(np.int64), TRAIN_EPOCHS - 1)
    test = TRAIN_EPOCHS + ((when - 1.0).clip(0) * TRAIN_EPOCHS).astype(np.int64)
    return np.where(when < 1.0, train, test)


def _window_of(epoch: np.ndarray | int, n_windows: int) -> np.ndarray:
    return np.minimum(np.asarray(epoch) // ENTRY_WINDOW, n_windows - 1)


def _entry(share: np.ndarray, period_end: float, n_epochs: int) -> np.ndarray:
    """Entry epoch of members / songs from their share of the period (0: there from the start)."""
    epoch = np.minimum(_epoch_of(share * period_end), n_epochs - 1)
    return np.where(share > 0, epoch, -1)


def _entries(
    share: np.ndarray, rows: np.ndarray, period_end: float, n_epochs: int
) -> tuple[np.ndarray, np.ndarray]:
    """Entry epoch and window of members / songs (-1: there from the start). Newcomers of a
    window without newcomer rows are there from the start: a share of 0 means no newcomers."""
    epoch = _entry(share, period_end, n_epochs)
    window = np.where(epoch < 0, -1, _window_of(epoch, len(rows)))
    keep = (window >= 0) & (rows[window.clip(0)] > 0)
    return np.where(keep, epoch, -1), np.where(keep, window, -1)


def make_plays(
    rng: np.random.Generator,
    members: dict,
    songs: dict,
    n_train: int,
    n_test: int,
    positive_rate: float = 0.5,
    effects: TimeEffects | None = None,
    keep_parts: bool = False,
) -> dict[str, np.ndarray]:
    """Plays in time order: member, song, source and the true replay probability of each; its
    mean over the train rows is `positive_rate` (see logit_offset for 0.5). Songs and members
    enter, trend and the source mix drifts as `effects` says. `keep_parts` adds the train rows'
    logit parts (see logit_parts)."""
    fx = effects or TimeEffects()
    n = n_train + n_test
    n_members = len(members["bias"])
    n_songs = len(songs["appeal"])
    period_end = 1.0 + n_test / n_train
    # One random time in each 1/n of the period, in order: row k of n_train * k / 5 is the first
    # of its entry window, so the eval split (the last fifth of train rows) is one window.
    when = np.r_[
        (np.arange(n_train) + rng.random(n_train)) / n_train,
        1.0 + (np.arange(n_test) + rng.random(n_test)) / n_train,
    ]
    epoch = _epoch_of(when)
    n_epochs = int(epoch[-1]) + 1
    n_windows = TRAIN_EPOCHS // ENTRY_WINDOW + 1
    window = _window_of(epoch, n_windows)
    # `when` is sorted, so each epoch is one contiguous range of rows.
    bounds = np.searchsorted(epoch, np.arange(n_epochs + 1))
    # The share of each window's rows that go to the members / songs entering in it.
    newcomer_rows = {
        "member": np.r_[np.full(n_windows - 1, fx.new_member_rows_eval), fx.new_member_rows_test],
        "song": np.r_[np.full(n_windows - 1, fx.new_song_rows_eval), fx.new_song_rows_test],
    }
    member_entry, member_window = _entries(
        members["entry"], newcomer_rows["member"], period_end, n_epochs
    )
    song_entry, song_window = _entries(
        songs["released"], newcomer_rows["song"], period_end, n_epochs
    )
    released = np.flatnonzero(song_entry >= 0)
    released_at = song_entry[released] * EPOCH

    # Favourite artists: three per member, drawn by artist popularity.
    artist_weight = np.bincount(
        songs["artist"], weights=songs["popularity"], minlength=songs["n_artists"]
    )
    favourites = _sample_weighted(rng, np.cumsum(artist_weight), n_members * 3).reshape(-1, 3)
    # Each artist's songs, those there from the start first, then by entry window.
    by_artist = np.lexsort((song_window, songs["artist"]))
    starts = np.r_[0, np.cumsum(np.bincount(songs["artist"], minlength=songs["n_artists"]))]
    by_genre = np.argsort(songs["genre"], kind="stable")
    genre_sorted = songs["genre"][by_genre]
    genre_cuts = np.searchsorted(genre_sorted, np.arange(len(GENRES) + 1))

    # Each play comes from the charts, the member's favourite genres or artists (routes 0-2), or
    # from the songs entering in this window (3).
    route = rng.choice(3, size=n, p=[0.55, 0.30, 0.15])
    route[rng.random(n) < newcomer_rows["song"][window]] = 3
    to_new_member = rng.random(n) < newcomer_rows["member"][window]
    member = np.empty(n, dtype=np.int64)
    song = np.full(n, -1, dtype=np.int64)
    source = np.empty(n, dtype=np.int64)
    taste_pick = rng.integers(0, 2, n)
    favourite_pick = rng.integers(0, 3, n)
    song_trend = fx.song_trend * songs["trend"]
    member_trend = fx.member_trend * members["trend"]
    catalogue_count = None
    for e in range(n_epochs):
        start, end = bounds[e], bounds[e + 1]
        w = int(_window_of(e, n_windows))
        t = min((e + 0.5) * EPOCH, period_end)

        # Members: those there before this window, by their trending activity, and a share of
        # rows for the ones that have entered in it.
        activity = members["activity"] * np.exp(member_trend * (t - 0.5))
        old = activity * (member_window < w)
        new = activity * ((member_window == w) & (member_entry <= e))
        rows = np.arange(start, end)
        newcomer = to_new_member[start:end] & (new.sum() > 0)
        member[rows[~newcomer]] = _sample_weighted(rng, np.cumsum(old), int((~newcomer).sum()))
        member[rows[newcomer]] = _sample_weighted(rng, np.cumsum(new), int(newcomer.sum()))

        # Songs: popularity trends (each song its own way) and a new release starts high, fades.
        weight = songs["popularity"] * np.exp(song_trend * (t - 0.5))
        age = np.maximum(t - released_at, 0.0)
        weight[released] *= 1.0 + RELEASE_BOOST * np.exp(-age / fx.release_fade)
        catalogue = weight * (song_window < w)
        entering = weight * ((song_window == w) & (song_entry <= e))
        r = route[start:end]

        if e % ENTRY_WINDOW == 0 or catalogue_count is None or e == TRAIN_EPOCHS:
            in_catalogue = song_window < w
            catalogue_count = np.bincount(
                songs["artist"][in_catalogue], minlength=songs["n_artists"]
            )
        rows = start + np.flatnonzero(r == 2)
        fav = favourites[member[rows], favourite_pick[rows]]
        count = catalogue_count[fav]
        offset = (rng.random(len(rows)) * count).astype(np.int64)
        has = count > 0
        song[rows[has]] = by_artist[starts[fav[has]] + offset[has]]

        w_sorted = catalogue[by_genre]
        by_taste = start + np.flatnonzero(r == 1)
        taste = members["genres"][member[by_taste], taste_pick[by_taste]]
        by_taste = by_taste[np.argsort(taste, kind="stable")]
        cuts = np.searchsorted(np.sort(taste, kind="stable"), np.arange(len(GENRES) + 1))
        for g in range(len(GENRES)):
            rows = by_taste[cuts[g] : cuts[g + 1]]
            lo, hi = genre_cuts[g], genre_cuts[g + 1]
            cum = np.cumsum(w_sorted[lo:hi])
            if len(rows) and hi > lo and cum[-1] > 0:
                song[rows] = by_genre[lo + _sample_weighted(rng, cum, len(rows))]

        rows = start + np.flatnonzero(r == 3)
        if len(rows) and entering.sum() > 0:
            song[rows] = _sample_weighted(rng, np.cumsum(entering), len(rows))
        # The charts, and every row the other routes left (no song there yet): catalogue songs.
        rows = start + np.flatnonzero(song[start:end] < 0)
        song[rows] = _sample_weighted(rng, np.cumsum(catalogue), len(rows))

        # The source mix drifts from the own library towards online sources.
        mix = members["source_mix"] * np.exp(fx.source_drift * SOURCE_DRIFT * (t - 0.5) / 2)
        mix /= mix.sum(axis=1, keepdims=True)
        source[start:end] = _row_choice(rng, mix, member[start:end])

    # The parts of the logit: what the oracle knows of each play (see logit_parts).
    parts = {
        "member_bias": 0.55 * members["bias"][member],
        "song_appeal": 0.50 * songs["appeal"][song],
        "genre_match": 0.70 * (songs["genre"][song][:, None] == members["genres"][member]).any(1),
        "artist_match": 0.90 * (songs["artist"][song][:, None] == favourites[member]).any(1),
        "language_match": 0.35 * (songs["language"][song] == members["language"][member]),
        "source": np.array([s[4] for s in SOURCES])[source],
        "time": -0.20 * when,
    }
    logit = functools.reduce(operator.add, parts.values())
    logit = 1.3 * (logit - np.median(logit[:n_train]))
    logit += logit_offset(logit[:n_train], positive_rate)
    log.debug("plays: %d rows, %d members, %d songs", n, n_members, n_songs)
    return {
        "member": member,
        "song": song,
        "source": source,
        "probability": _sigmoid(logit),
        "n_train": n_train,
        **({"parts": {k: v[:n_train] for k, v in parts.items()}} if keep_parts else {}),
    }


def _rows(values: pa.Array | np.ndarray, keep: np.ndarray) -> pa.Array | np.ndarray:
    return values.filter(pa.array(keep)) if isinstance(values, pa.Array) else values[keep]


def _draw(
    scale: Scale,
    seed: int,
    positive_rate: float,
    effects: dict[str, float],
    keep_parts: bool = False,
) -> tuple[np.random.Generator, dict, dict, dict, dict]:
    """The members, songs and plays of generate(), and its random generator where they leave it."""
    rng = np.random.default_rng(seed)
    members, member_traits = make_members(rng, scale.members)
    log.info("members: %d rows", scale.members)
    songs, extra, song_traits = make_songs(rng, scale.songs)
    log.info("songs: %d rows (%d artists)", scale.songs, song_traits["n_artists"])
    plays = make_plays(
        rng,
        member_traits,
        song_traits,
        scale.train,
        scale.test,
        positive_rate=positive_rate,
        effects=TimeEffects(**effects),
        keep_parts=keep_parts,
    )
    log.info("plays: %d train + %d test rows", scale.train, scale.test)
    return rng, members, songs, extra, plays


def logit_parts(
    scale: Scale, seed: int, positive_rate: float = 0.5, **effects: float
) -> dict[str, np.ndarray]:
    """The parts of each train.csv row's logit, as generate() with the same arguments draws
    them, before the sum is centred and scaled: what the oracle knows of a play and a model has
    to estimate (the member's bias, the song's appeal, whether the song is of the member's
    hidden genres, favourite artists or language, the source's and the time's effects)."""
    return _draw(scale, seed, positive_rate, effects, keep_parts=True)[-1]["parts"]


def generate(
    scale: Scale, seed: int, positive_rate: float = 0.5, **effects: float
) -> dict[str, dict[str, np.ndarray]]:
    """All Kaggle tables (as column arrays) plus the truth file, from one seed; the train rows'
    mean true replay probability is `positive_rate`, `effects` are TimeEffects' fields."""
    rng, members, songs, extra, plays = _draw(scale, seed, positive_rate, effects)

    source = plays["source"]
    target = (rng.random(len(source)) < plays["probability"]).astype(np.int64)

    def plays_of(part: slice) -> dict[str, pa.Array]:
        # Dictionary arrays: the writer decodes them chunk by chunk, no 10M-row string copies.
        columns = {
            "msno": pa.DictionaryArray.from_arrays(plays["member"][part], members["msno"]),
            "song_id": pa.DictionaryArray.from_arrays(plays["song"][part], songs["song_id"]),
        }
        for i, name in enumerate(("source_system_tab", "source_screen_name", "source_type")):
            labels = pa.array([s[i] for s in SOURCES], pa.string())
            columns[name] = pa.DictionaryArray.from_arrays(source[part], labels)
        return columns

    train = {**plays_of(slice(0, scale.train)), "target": target[: scale.train]}
    test = {"id": np.arange(scale.test, dtype=np.int64), **plays_of(slice(scale.train, None))}
    # Kaggle's songs.csv misses a few songs that train/test play; song_extra_info misses more.
    keep = rng.random(scale.songs) >= 0.0003
    songs = {k: _rows(v, keep) for k, v in songs.items()}
    keep_extra = rng.random(scale.songs) >= 0.0002
    extra = {k: _rows(v, keep_extra) for k, v in extra.items()}
    return {
        "members.csv": members,
        "songs.csv": songs,
        "song_extra_info.csv": extra,
        "train.csv": train,
        "test.csv": test,
        "train_truth.csv": {"target_probability": plays["probability"][: scale.train].round(6)},
    }


def write(out: Path, scale: str, seed: int, positive_rate: float = 0.5, **effects: float) -> None:
    """Generate every table of one scale and write them into `out` (atomically, as a whole);
    `effects` are TimeEffects' fields (its defaults where left out)."""
    started = time.perf_counter()
    tables = generate(SCALES[scale], seed, positive_rate=positive_rate, **effects)
    with atomic_dir(out) as tmp:
        for name, columns in tables.items():
            rows = write_csv(columns, tmp / name)
            log.info("wrote %s/%s: %d rows", out, name, rows)
    log.info(
        "%s scale, seed %d, positive rate %g: done in %.1f s",
        scale,
        seed,
        positive_rate,
        time.perf_counter() - started,
    )
