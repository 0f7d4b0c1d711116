"""Feature engineering: pure functions on DataFrames, fitted on the training part only.

Every statistic (category vocabularies, play counts, target encodings) is fitted once on the
training rows and applied unchanged to the eval and test rows, so train and serving agree and
no eval target can leak into a feature.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

UNSEEN = 0  # a category not seen (or too rare) in the training part
MISSING = 1  # an empty field
FIRST_CODE = 2

SOURCE = ["source_system_tab", "source_screen_name", "source_type"]
CATEGORICAL = [*SOURCE, "city", "gender", "registered_via", "language", "first_genre",
               "isrc_country"]
NUMERIC = ["bd", "membership_days", "registration_year", "song_length_s", "genre_count",
           "composer_count", "lyricist_count", "isrc_year"]
COUNTS = ["member_plays", "song_plays", "artist_plays", "member_genre_share",
          "member_artist_share", "member_language_share"]
# Target encodings: the smoothed replay rate of a key (or a pair of keys) in the training part.
TARGET_KEYS: dict[str, tuple[str, ...]] = {
    "te_member": ("member_key",),
    "te_song": ("song_key",),
    "te_artist": ("artist_key",),
    "te_member_genre": ("member_key", "first_genre"),
    "te_member_artist": ("member_key", "artist_key"),
    "te_member_source": ("member_key", "source_system_tab"),
}
FEATURES = CATEGORICAL + NUMERIC + COUNTS + list(TARGET_KEYS)


def clean_bd(bd: pd.Series) -> pd.Series:
    """Ages outside 5..80 (0 = not given, and outliers such as -43 or 1051) become missing."""
    age = bd.astype("float32")
    return age.where((age >= 5) & (age <= 80))


def yyyymmdd(values: pd.Series) -> pd.Series:
    """YYYYMMDD integers as dates; 19700101 (Kaggle's 'unknown') and invalid ones as NaT."""
    dates = pd.to_datetime(values.astype("Int64").astype("string"), format="%Y%m%d",
                           errors="coerce")
    return dates.where(dates.dt.year > 1970)


def split_count(values: pd.Series) -> pd.Series:
    """Number of '|'-separated entries; 0 when missing."""
    return (values.str.count(r"\|") + 1).fillna(0).astype("int8")


def member_table(members: pd.DataFrame) -> pd.DataFrame:
    """Per-member attributes: cleaned age, membership length, registration year."""
    registered = yyyymmdd(members["registration_init_time"])
    expires = yyyymmdd(members["expiration_date"])
    return pd.DataFrame({
        "city": members["city"],
        "bd": clean_bd(members["bd"]),
        "gender": members["gender"],
        "registered_via": members["registered_via"],
        "registration_year": registered.dt.year.astype("float32"),
        "membership_days": (expires - registered).dt.days.astype("float32"),
    })


def song_table(songs: pd.DataFrame, extra: pd.DataFrame) -> pd.DataFrame:
    """Per-song attributes: first genre, genre/composer/lyricist counts, ISRC country and year."""
    genres = songs["genre_ids"]
    isrc = pd.Series(extra["isrc"].to_numpy(), index=extra["song_id"].to_numpy())
    isrc = isrc[~isrc.index.duplicated()].reindex(songs["song_id"].to_numpy())
    yy = pd.to_numeric(isrc.str.slice(5, 7), errors="coerce").to_numpy()
    return pd.DataFrame({
        "song_length_s": (songs["song_length"] / 1000.0).astype("float32"),
        "first_genre": genres.str.split("|", n=1).str[0],
        "genre_count": split_count(genres),
        "composer_count": split_count(songs["composer"]),
        "lyricist_count": split_count(songs["lyricist"]),
        "language": songs["language"].astype("float32"),
        "artist_key": pd.factorize(songs["artist_name"], use_na_sentinel=True)[0],
        "isrc_country": isrc.str.slice(0, 2).to_numpy(),
        # Two-digit ISRC years: 00-29 are 20xx, the rest 19xx.
        "isrc_year": np.where(yy < 30, 2000 + yy, 1900 + yy).astype("float32"),
    })


def join_plays(plays: pd.DataFrame, members: pd.DataFrame, songs: pd.DataFrame,
               member_attrs: pd.DataFrame, song_attrs: pd.DataFrame) -> pd.DataFrame:
    """Plays joined with member and song attributes through integer keys (-1 = not found)."""
    member_key = pd.Index(members["msno"]).get_indexer(plays["msno"])
    song_key = pd.Index(songs["song_id"]).get_indexer(plays["song_id"])
    out = {c: plays[c].to_numpy() for c in SOURCE}
    out["member_key"] = member_key
    out["song_key"] = song_key
    for attrs, key in ((member_attrs, member_key), (song_attrs, song_key)):
        for col in attrs.columns:
            out[col] = _take(attrs[col].to_numpy(), key)
    out["artist_key"] = np.where(song_key >= 0, out["artist_key"], -1).astype(np.int64)
    return pd.DataFrame(out)


def _take(values: np.ndarray, key: np.ndarray) -> np.ndarray:
    """values[key] with key -1 giving a missing value of the right kind."""
    if values.dtype.kind in "iu":
        values = values.astype("float32") if values.dtype.itemsize <= 2 else values
    if values.dtype.kind in "iu":
        taken = values[np.maximum(key, 0)]
        return np.where(key >= 0, taken, -1)
    if values.dtype.kind == "f":
        return np.where(key >= 0, values[np.maximum(key, 0)], np.nan).astype(values.dtype)
    taken = values[np.maximum(key, 0)].astype(object)
    taken[key < 0] = None
    return taken


def fit_vocabulary(values: pd.Series, min_count: int) -> list:
    """Categories of the training part, most frequent first (ties by value): code = 2 + rank."""
    counts = pd.Series(values).dropna().value_counts()
    counts = counts[counts >= min_count]
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))
    return [value.item() if hasattr(value, "item") else value for value, _ in ordered]


def encode(values: pd.Series | np.ndarray, vocabulary: list) -> np.ndarray:
    """Codes from a fitted vocabulary: unseen -> UNSEEN, missing -> MISSING."""
    inverse, uniques = pd.factorize(pd.Series(values), use_na_sentinel=True)
    found = pd.Index(vocabulary).get_indexer(pd.Index(uniques)) if len(uniques) else []
    mapped = np.where(np.asarray(found) >= 0, np.asarray(found) + FIRST_CODE, UNSEEN)
    codes = np.append(mapped, MISSING).astype(np.int16)[inverse]  # inverse -1 = missing
    return codes


def _composite(frame: pd.DataFrame, columns: tuple[str, ...]) -> np.ndarray:
    """One int64 key per row from one or two integer-coded columns (-1 allowed)."""
    key = np.asarray(frame[columns[0]], dtype=np.int64) + 1
    for col in columns[1:]:
        key = key * (1 << 24) + (np.asarray(frame[col], dtype=np.int64) + 1)
    return key


@dataclass
class KeyStats:
    """Counts and target sums per key, fitted on the training part."""

    index: pd.Index
    counts: np.ndarray
    sums: np.ndarray

    @classmethod
    def fit(cls, key: np.ndarray, target: np.ndarray) -> KeyStats:
        uniques, inverse = np.unique(key, return_inverse=True)
        counts = np.bincount(inverse, minlength=len(uniques)).astype(np.float64)
        sums = np.bincount(inverse, weights=target, minlength=len(uniques))
        return cls(pd.Index(uniques), counts, sums)

    def lookup(self, key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Counts and target sums for keys (0 for keys never seen in training)."""
        pos = self.index.get_indexer(key)
        seen = pos >= 0
        counts = np.where(seen, self.counts[pos], 0.0)
        sums = np.where(seen, self.sums[pos], 0.0)
        return counts, sums


def smoothed_rate(sums: np.ndarray, counts: np.ndarray, prior: float, weight: float) -> np.ndarray:
    """Replay rate shrunk towards the prior: (sum + prior * w) / (count + w)."""
    return ((sums + prior * weight) / (counts + weight)).astype(np.float32)


@dataclass
class Encoder:
    """Everything fitted on the training part; applied unchanged to eval and test."""

    vocabularies: dict[str, list]
    prior: float
    smoothing: float
    stats: dict[str, KeyStats] = field(repr=False)

    def summary(self) -> dict:
        """A JSON-ready description of what was fitted."""
        return {
            "features": FEATURES,
            "prior": self.prior,
            "smoothing": self.smoothing,
            "vocabularies": {k: [str(v) for v in vals] for k, vals in self.vocabularies.items()},
            "keys_seen": {k: len(s.index) for k, s in self.stats.items()},
        }


def _coded(frame: pd.DataFrame, vocabularies: dict[str, list]) -> pd.DataFrame:
    """The joined frame with categorical columns replaced by their codes."""
    out = frame.copy()
    for col in CATEGORICAL:
        out[col] = encode(frame[col], vocabularies[col])
    return out


def _stat_keys() -> dict[str, tuple[str, ...]]:
    keys = dict(TARGET_KEYS)
    keys["member_language"] = ("member_key", "language")
    return keys


def fit(train: pd.DataFrame, min_count: int, smoothing: float) -> Encoder:
    """Fit vocabularies, counts and target statistics on the joined training rows."""
    vocabularies = {col: fit_vocabulary(train[col], min_count) for col in CATEGORICAL}
    coded = _coded(train, vocabularies)
    y = train["target"].to_numpy(dtype=np.float64)
    stats = {name: KeyStats.fit(_composite(coded, cols), y) for name, cols in _stat_keys().items()}
    return Encoder(vocabularies, float(y.mean()), smoothing, stats)


def transform(frame: pd.DataFrame, encoder: Encoder,
              oof_folds: np.ndarray | None = None) -> pd.DataFrame:
    """Model features for joined rows. For the training rows themselves pass `oof_folds`:
    their target encodings then come from the other folds only (out-of-fold), so a row's own
    target never feeds its features."""
    coded = _coded(frame, encoder.vocabularies)
    out = pd.DataFrame({col: coded[col] for col in CATEGORICAL})
    for col in NUMERIC:
        out[col] = np.asarray(frame[col], dtype=np.float32)
    counts = {}
    for name, cols in _stat_keys().items():
        counts[name] = encoder.stats[name].lookup(_composite(coded, cols))
    member_plays = counts["te_member"][0]
    out["member_plays"] = member_plays.astype(np.float32)
    out["song_plays"] = counts["te_song"][0].astype(np.float32)
    out["artist_plays"] = counts["te_artist"][0].astype(np.float32)
    safe = np.maximum(member_plays, 1.0)
    out["member_genre_share"] = (counts["te_member_genre"][0] / safe).astype(np.float32)
    out["member_artist_share"] = (counts["te_member_artist"][0] / safe).astype(np.float32)
    out["member_language_share"] = (counts["member_language"][0] / safe).astype(np.float32)
    y = frame["target"].to_numpy(dtype=np.float64) if oof_folds is not None else None
    for name, cols in TARGET_KEYS.items():
        key = _composite(coded, cols)
        n, s = counts[name]
        if oof_folds is not None:
            n, s = _out_of_fold(key, y, oof_folds, n, s)
        out[name] = smoothed_rate(s, n, encoder.prior, encoder.smoothing)
    return out[FEATURES]


def _out_of_fold(key: np.ndarray, y: np.ndarray, folds: np.ndarray, counts: np.ndarray,
                 sums: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Subtract each row's own fold from the full-training counts and sums."""
    counts = counts.copy()
    sums = sums.copy()
    for f in np.unique(folds):
        rows = folds == f
        stats = KeyStats.fit(key[rows], y[rows])
        n_f, s_f = stats.lookup(key[rows])
        counts[rows] -= n_f
        sums[rows] -= s_f
    return counts, sums


def assign_folds(n_rows: int, n_folds: int, seed: int) -> np.ndarray:
    """Random fold number per training row, reproducible from the seed."""
    return np.random.default_rng(seed).integers(0, n_folds, n_rows).astype(np.int8)
