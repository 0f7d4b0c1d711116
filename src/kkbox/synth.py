"""A schema-faithful synthetic KKBox data set with known, learnable signal.

Every table has Kaggle's columns, order, encodings and quirks. The target of each train row is
drawn from a known probability built from member taste (genres, artists, language), song
appeal, member bias and listening context, so the pipeline can be scored against the best
possible model (the oracle AUC of that probability).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


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

GENRES = [465, 958, 1609, 2022, 2122, 1259, 921, 1152, 786, 359, 139, 726, 1011, 444, 437,
          1616, 2130, 940, 423, 458, 1572, 388, 352, 275, 242, 873, 2058, 1955, 829, 947,
          691, 864, 2157, 1180, 2107, 880, 1138, 374, 1145, 381]
# (language code, share of songs, popularity multiplier): Taiwanese listeners favour Mandarin (3).
LANGUAGES = [(52.0, 0.42, 0.6), (-1.0, 0.27, 0.4), (3.0, 0.13, 4.0), (17.0, 0.06, 1.0),
             (31.0, 0.05, 1.6), (24.0, 0.03, 1.2), (10.0, 0.02, 0.8), (59.0, 0.005, 0.5),
             (45.0, 0.009, 0.5), (38.0, 0.006, 0.4)]
CITIES = [1, 13, 5, 4, 15, 22, 6, 14, 12, 8, 9, 11, 18, 21, 3, 10, 17, 7, 16, 20, 19]
REGISTERED_VIA = [(7, 0.44), (9, 0.23), (4, 0.26), (3, 0.065), (13, 0.005)]
ISRC_COUNTRIES = ["TW", "US", "GB", "JP", "KR", "HK", "CN", "DE", "FR", "SE", "QM", "QZ"]

_FAMILY = "陳林黃張李王吳劉蔡楊許鄭謝郭洪曾邱廖賴周徐蘇葉莊呂江何蕭羅高"
_GIVEN = "杰倫家豪志明俊宏建華文雅婷淑芬美玲怡君佳穎宗翰承恩柏翰冠宇詩涵心怡子晴"
_LATIN = ["The", "Black", "Blue", "Night", "Moon", "Star", "Lost", "Young", "Wild", "Golden",
          "Electric", "Silver", "Summer", "Ghost", "Paper", "River", "Neon", "Sky", "Fire",
          "Echo", "Love", "Dream", "City", "Heart", "Rain", "Sun", "Ocean", "Stone", "Velvet"]
_HANGUL = "민지서연하준도윤수아지호예은현우채원"
_KANA = "さくらはるかゆいあおいりんかなみつき"

_B64 = np.frombuffer(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", dtype=np.uint8
)


def kaggle_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """Return n unique 44-character base64 ids (32 random bytes, '=' padded) like Kaggle's."""
    raw = np.zeros((n, 33), dtype=np.uint8)
    raw[:, :32] = rng.integers(0, 256, size=(n, 32), dtype=np.uint8)
    b = raw.reshape(n, 11, 3).astype(np.uint32)
    word = (b[..., 0] << 16) | (b[..., 1] << 8) | b[..., 2]
    sextets = np.stack([(word >> s) & 63 for s in (18, 12, 6, 0)], axis=-1).reshape(n, 44)
    chars = _B64[sextets]
    chars[:, 43] = ord("=")
    text = chars.tobytes().decode("ascii")
    ids = np.array([text[i : i + 44] for i in range(0, 44 * n, 44)], dtype=object)
    if len(set(ids)) != n:  # 256 random bits: never in practice, but keys must be unique
        raise RuntimeError("id collision; change generate.seed")
    return ids


def _zero_padded(width: int) -> np.ndarray:
    return np.array([f"{i:0{width}d}" for i in range(10**width)], dtype=object)


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


def _names(rng: np.random.Generator, n: int) -> np.ndarray:
    """Person / band names: Chinese, English, Korean, Japanese, some quoted or with commas."""
    kind = rng.choice(5, size=n, p=[0.5, 0.3, 0.08, 0.07, 0.05])

    def draw(alphabet: list[str] | str, k: int) -> list[np.ndarray]:
        pool = np.array(list(alphabet), dtype=object)
        return [pool[rng.integers(0, len(pool), n)] for _ in range(k)]

    fam, = draw(_FAMILY, 1)
    g0, g1 = draw(_GIVEN, 2)
    l0, l1 = draw(_LATIN, 2)
    h0, h1, h2 = draw(_HANGUL, 3)
    k0, k1, k2, k3 = draw(_KANA, 4)
    variants = [
        fam + g0 + g1,
        l0 + " " + l1,
        h0 + h1 + h2,
        k0 + k1 + k2 + k3,
        fam + g0 + ' ("' + l0 + '", ' + l1 + ")",
    ]
    return np.choose(kind, variants)


def _pipe_join(rng: np.random.Generator, pool: np.ndarray, n: int, p_missing: float,
               p_multi: float) -> np.ndarray:
    """Pipe-separated picks from a pool, missing (None) with probability p_missing."""
    first = pool[rng.integers(0, len(pool), n)]
    second = pool[rng.integers(0, len(pool), n)]
    multi = rng.random(n) < p_multi
    out = first.copy()
    out[multi] = first[multi] + "|" + second[multi]
    out[rng.random(n) < p_missing] = None
    return out


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
        "msno": msno, "city": city, "bd": bd, "gender": gender,
        "registered_via": registered_via, "registration_init_time": reg,
        "expiration_date": expiration,
    }
    traits = {
        "bias": rng.normal(0.0, 1.0, n) + 0.25 * (registered_via == 9) - 0.2 * (bd == 0),
        "activity": rng.lognormal(0.0, 1.1, n),
        "genres": rng.choice(len(GENRES), size=(n, 2), p=_zipf(len(GENRES), 0.9)),
        "language": _pick(rng, [3.0, 52.0, 31.0, 17.0, -1.0], [0.55, 0.25, 0.1, 0.05, 0.05], n),
        "source_mix": rng.dirichlet(np.array([s[3] for s in SOURCES]) * 20, size=n),
        "new": rng.random(n) < 0.1,  # members who only show up in the test period
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
    artists[0] = "Various Artists"
    artist_pop = rng.pareto(1.2, n_artists) + 0.05
    artist_appeal = rng.normal(0.0, 0.6, n_artists)
    artist = rng.choice(n_artists, size=n, p=_zipf(n_artists, 0.6))
    lang_codes, lang_share, lang_pop = (np.array(x) for x in zip(*LANGUAGES, strict=True))
    lang_idx = rng.choice(len(lang_codes), size=n, p=lang_share / lang_share.sum())
    language = lang_codes[lang_idx].astype(np.float64)
    language[rng.random(n) < 2e-6] = np.nan
    genre = rng.choice(len(GENRES), size=n, p=_zipf(len(GENRES), 1.1))
    second = rng.choice(len(GENRES), size=n, p=_zipf(len(GENRES), 1.1))
    gstr = np.array([str(g) for g in GENRES], dtype=object)
    genre_ids = gstr[genre].copy()
    multi = (rng.random(n) < 0.064) & (second != genre)
    genre_ids[multi] = gstr[genre[multi]] + "|" + gstr[second[multi]]
    genre_ids[rng.random(n) < 0.02] = None
    people = _names(rng, max(100, n // 10))
    composer = _pipe_join(rng, people, n, 0.42, 0.15)
    lyricist = _pipe_join(rng, people, n, 0.73, 0.08)
    length = np.clip(rng.lognormal(np.log(234_000), 0.32, n), 1_500, 3_600_000).astype(np.int64)
    popularity = artist_pop[artist] * rng.lognormal(0, 1.3, n) * lang_pop[lang_idx]
    released = np.where(rng.random(n) < 0.12, rng.random(n) * 1.3, 0.0)
    year = np.where(released > 0, 17, rng.integers(0, 17, n))
    registrants = np.array(["UM7", "A16", "B08", "G01", "H23", "SB1", "EM0", "W17"], dtype=object)
    isrc = (
        np.array(ISRC_COUNTRIES, dtype=object)[rng.integers(0, len(ISRC_COUNTRIES), n)]
        + registrants[rng.integers(0, len(registrants), n)]
        + _ZERO_PADDED_2[year]
        + _zero_padded(5)[rng.integers(0, 100_000, n)]
    )
    isrc[rng.random(n) < 0.06] = None
    titles = _names(rng, n)
    columns = {
        "song_id": song_id, "song_length": length, "genre_ids": genre_ids,
        "artist_name": artists[artist], "composer": composer, "lyricist": lyricist,
        "language": language,
    }
    extra = {"song_id": song_id, "name": titles, "isrc": isrc}
    zpop = (np.log(popularity) - np.log(popularity).mean()) / np.log(popularity).std()
    traits = {
        "artist": artist, "genre": np.where(genre_ids == None, -1, genre),  # noqa: E711
        "language": language, "popularity": popularity, "released": released,
        "appeal": 0.45 * zpop + artist_appeal[artist] + rng.normal(0.0, 0.35, n),
        "n_artists": n_artists,
    }
    return columns, extra, traits


def _sample_weighted(rng: np.random.Generator, cum: np.ndarray, n: int) -> np.ndarray:
    """Indices drawn with probability proportional to the weights whose cumsum is `cum`."""
    return np.searchsorted(cum, rng.random(n) * cum[-1], side="right").clip(0, len(cum) - 1)


def _row_choice(rng: np.random.Generator, probs: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """For each row r, one category drawn from the distribution probs[rows[r]]."""
    cum = np.cumsum(probs, axis=1)
    out = np.empty(len(rows), dtype=np.int64)
    step = 1_000_000
    for lo in range(0, len(rows), step):
        part = rows[lo : lo + step]
        u = rng.random(len(part))[:, None]
        out[lo : lo + step] = (cum[part] < u).sum(axis=1)
    return out.clip(0, probs.shape[1] - 1)


def make_plays(
    rng: np.random.Generator, members: dict, songs: dict, n_train: int, n_test: int
) -> dict[str, np.ndarray]:
    """Plays in time order: member, song, source and the true replay probability of each."""
    n = n_train + n_test
    n_members = len(members["bias"])
    n_songs = len(songs["appeal"])
    period_end = 1.0 + n_test / n_train
    when = np.r_[np.sort(rng.random(n_train)), 1.0 + np.sort(rng.random(n_test)) * (n_test / n_train)]

    active_train = members["activity"] * ~members["new"]
    active_test = members["activity"] * np.where(members["new"], 3.0, 1.0)
    member = np.r_[
        _sample_weighted(rng, np.cumsum(active_train), n_train),
        _sample_weighted(rng, np.cumsum(active_test), n_test),
    ]

    # Each play comes from the global charts, the member's favourite genres, or their artists.
    route = rng.choice(3, size=n, p=[0.55, 0.30, 0.15])
    song = np.empty(n, dtype=np.int64)
    epochs = np.linspace(0.0, period_end, 15)
    epoch = np.searchsorted(epochs, when, side="right") - 1
    by_genre = np.argsort(songs["genre"], kind="stable")
    genre_sorted = songs["genre"][by_genre]
    taste_genre = members["genres"][member, rng.integers(0, 2, n)]
    for e in range(len(epochs) - 1):
        in_epoch = epoch == e
        released = songs["released"] <= epochs[e + 1]
        fresh = (songs["released"] > epochs[e + 1] - 0.3) & (songs["released"] > 0)
        weight = songs["popularity"] * released * np.where(fresh, 3.0, 1.0)
        rows = np.flatnonzero(in_epoch & (route != 1))
        song[rows] = _sample_weighted(rng, np.cumsum(weight), len(rows))
        w_sorted = weight[by_genre]
        for g in range(len(GENRES)):
            rows = np.flatnonzero(in_epoch & (route == 1) & (taste_genre == g))
            lo, hi = np.searchsorted(genre_sorted, [g, g + 1])
            if len(rows) and hi > lo:
                pick = _sample_weighted(rng, np.cumsum(w_sorted[lo:hi]), len(rows))
                song[rows] = by_genre[lo + pick]

    # Favourite artists: three per member, drawn by artist popularity.
    artist_weight = np.bincount(songs["artist"], weights=songs["popularity"],
                                minlength=songs["n_artists"])
    favourites = _sample_weighted(rng, np.cumsum(artist_weight), n_members * 3).reshape(-1, 3)
    by_artist = np.argsort(songs["artist"], kind="stable")
    starts = np.searchsorted(songs["artist"][by_artist], np.arange(songs["n_artists"] + 1))
    rows = np.flatnonzero(route == 2)
    fav = favourites[member[rows], rng.integers(0, 3, len(rows))]
    count = starts[fav + 1] - starts[fav]
    song[rows] = by_artist[starts[fav] + (rng.random(len(rows)) * count).astype(np.int64)]

    source = _row_choice(rng, members["source_mix"], member)
    source_effect = np.array([s[4] for s in SOURCES])[source]
    genre_match = (songs["genre"][song][:, None] == members["genres"][member]).any(axis=1)
    artist_match = (songs["artist"][song][:, None] == favourites[member]).any(axis=1)
    lang_match = songs["language"][song] == members["language"][member]
    logit = (
        0.55 * members["bias"][member]
        + 0.50 * songs["appeal"][song]
        + 0.70 * genre_match
        + 0.90 * artist_match
        + 0.35 * lang_match
        + source_effect
        - 0.20 * when
    )
    logit = 1.3 * (logit - np.median(logit[:n_train]))
    log.debug("plays: %d rows, %d members, %d songs", n, n_members, n_songs)
    return {
        "member": member, "song": song, "source": source,
        "probability": 1.0 / (1.0 + np.exp(-logit)), "n_train": n_train,
    }


def generate(scale: Scale, seed: int) -> dict[str, dict[str, np.ndarray]]:
    """All Kaggle tables (as column arrays) plus the truth file, from one seed."""
    rng = np.random.default_rng(seed)
    members, member_traits = make_members(rng, scale.members)
    log.info("members: %d rows", scale.members)
    songs, extra, song_traits = make_songs(rng, scale.songs)
    log.info("songs: %d rows (%d artists)", scale.songs, song_traits["n_artists"])
    plays = make_plays(rng, member_traits, song_traits, scale.train, scale.test)
    log.info("plays: %d train + %d test rows", scale.train, scale.test)

    tabs = np.array([s[0] for s in SOURCES], dtype=object)
    screens = np.array([s[1] for s in SOURCES], dtype=object)
    types = np.array([s[2] for s in SOURCES], dtype=object)
    msno = members["msno"][plays["member"]]
    song_id = songs["song_id"][plays["song"]]
    source = plays["source"]
    target = (rng.random(len(source)) < plays["probability"]).astype(np.int64)
    tr = slice(0, scale.train)
    te = slice(scale.train, None)
    train = {
        "msno": msno[tr], "song_id": song_id[tr], "source_system_tab": tabs[source[tr]],
        "source_screen_name": screens[source[tr]], "source_type": types[source[tr]],
        "target": target[tr],
    }
    test = {
        "id": np.arange(scale.test, dtype=np.int64), "msno": msno[te], "song_id": song_id[te],
        "source_system_tab": tabs[source[te]], "source_screen_name": screens[source[te]],
        "source_type": types[source[te]],
    }
    # Kaggle's songs.csv misses a few songs that train/test play; song_extra_info misses more.
    keep = rng.random(scale.songs) >= 0.0003
    songs = {k: v[keep] for k, v in songs.items()}
    keep_extra = rng.random(scale.songs) >= 0.0002
    extra = {k: v[keep_extra] for k, v in extra.items()}
    return {
        "members.csv": members,
        "songs.csv": songs,
        "song_extra_info.csv": extra,
        "train.csv": train,
        "test.csv": test,
        "train_truth.csv": {"target_probability": plays["probability"][tr].round(6)},
    }
