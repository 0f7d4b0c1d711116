"""Feature engineering: pure functions on DataFrames, fitted on the training part only.

Every statistic (category vocabularies, play counts, target encodings) is fitted once on the
training rows and applied unchanged to the eval and test rows, so train and serving agree and
no eval target can leak into a feature.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

UNSEEN = 0  # a category not seen (or too rare) in the training part
MISSING = 1  # an empty field
FIRST_CODE = 2

SOURCE = ["source_system_tab", "source_screen_name", "source_type"]
CATEGORICAL = [
    *SOURCE,
    "city",
    "gender",
    "registered_via",
    "language",
    "first_genre",
    "isrc_country",
]
NUMERIC = [
    "bd",
    "membership_days",
    "registration_year",
    "song_length_s",
    "genre_count",
    "composer_count",
    "lyricist_count",
    "isrc_year",
]
COUNTS = [
    "member_plays",
    "song_plays",
    "artist_plays",
    "member_genre_share",
    "member_artist_share",
    "member_language_share",
]
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
    dates = pd.to_datetime(
        values.astype("Int64").astype("string"), format="%Y%m%d", errors="coerce"
    )
    return dates.where(dates.dt.year > 1970)


def _arrow(values: pd.Series | pa.Array | pa.ChunkedArray) -> pa.Array:
    """A column as one Arrow array (strings stay strings; all-missing becomes a string column)."""
    arr = values if isinstance(values, pa.Array | pa.ChunkedArray) else pa.array(values)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return arr.cast(pa.string()) if pa.types.is_null(arr.type) else arr


def _pandas(values: pa.Array, index: pd.Index | None = None) -> pd.Series:
    return pd.Series(values.to_pandas(), index=index)


def split_count(values: pd.Series) -> pd.Series:
    """Number of '|'-separated entries; 0 when missing."""
    counts = pc.fill_null(pc.add(pc.count_substring(_arrow(values), "|"), 1), 0)
    return pd.Series(counts.to_numpy().astype("int8"), index=values.index)


def member_table(members: pd.DataFrame) -> pd.DataFrame:
    """Per-member attributes: cleaned age, membership length, registration year."""
    registered = yyyymmdd(members["registration_init_time"])
    expires = yyyymmdd(members["expiration_date"])
    return pd.DataFrame(
        {
            "city": members["city"],
            "bd": clean_bd(members["bd"]),
            "gender": members["gender"],
            "registered_via": members["registered_via"],
            "registration_year": registered.dt.year.astype("float32"),
            "membership_days": (expires - registered).dt.days.astype("float32"),
        }
    )


def song_table(songs: pd.DataFrame, extra: pd.DataFrame) -> pd.DataFrame:
    """Per-song attributes: first genre, genre/composer/lyricist counts, ISRC country and year.

    String work runs in Arrow's kernels: songs.csv has 2.3 million rows at Kaggle's scale."""
    genres = _arrow(songs["genre_ids"])
    # The first song_extra_info row of each song_id (index_in finds the first occurrence).
    isrc = pc.take(
        _arrow(extra["isrc"]),
        pc.index_in(_arrow(songs["song_id"]), value_set=_arrow(extra["song_id"])),
    )
    yy = pc.dictionary_encode(pc.utf8_slice_codeunits(isrc, 5, 7))
    # to_numeric's rules on the few distinct two-character strings, then spread to the rows
    years = pd.to_numeric(pd.Series(yy.dictionary.to_pylist(), dtype=object), errors="coerce")
    yy = np.append(years.to_numpy(dtype=np.float64), np.nan)[
        pc.fill_null(yy.indices, len(years)).to_numpy()
    ]
    first_genre = pc.list_element(pc.split_pattern(genres, "|", max_splits=1), 0)
    return pd.DataFrame(
        {
            "song_length_s": (songs["song_length"] / 1000.0).astype("float32"),
            "first_genre": _pandas(first_genre, songs.index),
            "genre_count": split_count(songs["genre_ids"]),
            "composer_count": split_count(songs["composer"]),
            "lyricist_count": split_count(songs["lyricist"]),
            "language": songs["language"].astype("float32"),
            "artist_key": pd.factorize(songs["artist_name"], use_na_sentinel=True)[0].astype(
                np.int32
            ),
            "isrc_country": _pandas(pc.utf8_slice_codeunits(isrc, 0, 2), songs.index),
            # Two-digit ISRC years: 00-29 are 20xx, the rest 19xx.
            "isrc_year": np.where(yy < 30, 2000 + yy, 1900 + yy).astype("float32"),
        }
    )


def attributes(
    members: pa.Table, songs: pa.Table, extra: pa.Table
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Member and song attribute tables (categoricals factorized once) from the raw tables;
    `extra` needs song_extra_info's song_id and isrc only."""
    member_attrs = as_categories(member_table(members.to_pandas()))
    song_attrs = as_categories(
        song_table(
            songs.to_pandas(types_mapper=pd.ArrowDtype),
            extra.to_pandas(types_mapper=pd.ArrowDtype),
        )
    )
    return member_attrs, song_attrs


def keys_by_part(
    ids: dict[str, pa.ChunkedArray], table_ids: pa.ChunkedArray
) -> dict[str, np.ndarray]:
    """keys_of for several parts at once (train, eval, test): one hash join for all of them."""
    chunks = [chunk for part in ids.values() for chunk in part.chunks]
    kind = next(iter(ids.values())).type
    keys = keys_of(pa.chunked_array(chunks, kind), table_ids)
    ends = np.cumsum([len(part) for part in ids.values()])
    return dict(zip(ids, np.split(keys, ends[:-1]), strict=True))


def keys_of(
    ids: pd.Series | pa.Array | pa.ChunkedArray, table_ids: pd.Series | pa.Array | pa.ChunkedArray
) -> np.ndarray:
    """Row number of each id in a table's (unique) id column; -1 where it is not there.

    One hash join in Arrow: the 44-character ids never become Python strings. Pass the ids of
    all parts at once (a ChunkedArray): the table's hash is then built once."""
    if not isinstance(ids, pa.ChunkedArray):
        ids = pa.chunked_array([_arrow(ids)])
    if pa.types.is_dictionary(ids.type):
        return _dictionary_keys(ids, _arrow(table_ids))
    positions = pc.index_in(ids, value_set=_arrow(table_ids))
    return pc.fill_null(positions, -1).to_numpy().astype(np.int32)


def _dictionary_keys(ids: pa.ChunkedArray, table_ids: pa.Array) -> np.ndarray:
    """keys_of for dictionary-encoded ids: each distinct dictionary is looked up once (chunks
    read from one Parquet row group share theirs), then the rows take their key by index."""
    starts: dict[tuple[int, int], int] = {}
    dictionaries = []
    for chunk in ids.chunks:
        ident = _identity(chunk.dictionary)
        if ident not in starts:
            starts[ident] = sum(len(d) for d in dictionaries)
            dictionaries.append(chunk.dictionary)
    values = pa.concat_arrays(dictionaries) if dictionaries else pa.array([], table_ids.type)
    if pa.types.is_null(values.type):  # an empty Categorical's categories
        values = values.cast(table_ids.type)
    found = pc.fill_null(pc.index_in(values, value_set=table_ids), -1).to_numpy()
    lookup = np.append(found, -1).astype(np.int32)  # the last entry: a missing id
    keys = []
    for chunk in ids.chunks:
        start = starts[_identity(chunk.dictionary)]
        index = pc.fill_null(chunk.indices, -1 - start).to_numpy().astype(np.int64) + start
        keys.append(lookup[index])
    return np.concatenate(keys) if keys else np.empty(0, dtype=np.int32)


def _identity(dictionary: pa.Array) -> tuple[int, int]:
    """Where a dictionary's values live, and how many: equal for chunks that share it."""
    return (dictionary.buffers()[1].address if len(dictionary) else 0, len(dictionary))


def as_categories(attrs: pd.DataFrame) -> pd.DataFrame:
    """The categorical columns of a member or song table as Categoricals (factorized once);
    join_plays then only takes integer codes per play."""
    out = attrs.copy(deep=False)
    for col in attrs.columns.intersection(CATEGORICAL):
        values = attrs[col]
        if isinstance(values.dtype, pd.CategoricalDtype):
            continue
        if values.dtype.kind in "iu":
            values = pd.Series(_widen(values.to_numpy()))
        # Arrow-backed strings are factorized by Arrow, without Python string objects.
        codes, categories = pd.factorize(values, use_na_sentinel=True)
        out[col] = pd.Categorical.from_codes(codes, categories=categories)
    return out


@dataclass(frozen=True)
class Joinable:
    """A member or song table made ready to be joined once, for any number of joins: every
    column padded with one missing value at its end (key -1 reads it), categoricals as their
    integer codes (-1 = missing) with the Categorical dtype they come back with."""

    columns: dict[str, np.ndarray]
    categories: dict[str, pd.CategoricalDtype]


def joinable(attrs: pd.DataFrame | Joinable) -> Joinable:
    """The padded columns of a member or song attribute table (see Joinable)."""
    if isinstance(attrs, Joinable):
        return attrs
    attrs = as_categories(attrs)
    columns, categories = {}, {}
    for col in attrs.columns:
        if col in CATEGORICAL:
            cat = attrs[col].array
            columns[col] = _padded(cat.codes.astype(np.int32))
            categories[col] = cat.dtype
        else:
            columns[col] = _padded(attrs[col].to_numpy())
    return Joinable(columns, categories)


def join_plays(
    plays: pd.DataFrame,
    member_key: np.ndarray,
    song_key: np.ndarray,
    member_attrs: pd.DataFrame | Joinable,
    song_attrs: pd.DataFrame | Joinable,
) -> pd.DataFrame:
    """Plays joined with member and song attributes through integer keys (-1 = not found).

    Categorical attributes come out as pandas Categoricals (codes taken per row, categories
    factorized once per member or song, see as_categories): counting and encoding them is then
    integer work. Pass Joinable tables to join many times (a service): each join then only
    gathers its rows."""
    member_key = np.asarray(member_key, dtype=np.int32)
    song_key = np.asarray(song_key, dtype=np.int32)
    out: dict = {c: plays[c].array for c in SOURCE}
    out["member_key"] = member_key
    out["song_key"] = song_key
    for attrs, key in ((joinable(member_attrs), member_key), (joinable(song_attrs), song_key)):
        for col, values in attrs.columns.items():
            taken = values[key]  # key -1 reads the padded missing value: one gather, no mask
            if col in attrs.categories:
                taken = pd.Categorical.from_codes(taken, dtype=attrs.categories[col])
            out[col] = taken
    return pd.DataFrame(out, copy=False)


def _widen(values: np.ndarray) -> np.ndarray:
    """Small integers become float32, so that a missing value (NaN) fits."""
    if values.dtype.kind in "iu" and values.dtype.itemsize <= 2:
        return values.astype("float32")
    return values


def _padded(values: np.ndarray) -> np.ndarray:
    """values with a missing value of the right kind (-1, NaN or None) appended."""
    values = _widen(values)
    missing = {"i": -1, "u": -1, "f": np.nan}.get(values.dtype.kind)
    if missing is None:
        values, missing = values.astype(object), None
    return np.append(values, np.array([missing], dtype=values.dtype))


def fit_vocabulary(values: pd.Series, min_count: int) -> list:
    """Categories of the training part, most frequent first (ties by value): code = 2 + rank."""
    return _vocabulary(pd.Series(values).value_counts(), min_count)


def _vocabulary(counts: pd.Series, min_count: int) -> list:
    counts = counts[(counts >= min_count) & (counts > 0)]  # a Categorical counts absent ones too
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))
    return [value.item() if hasattr(value, "item") else value for value, _ in ordered]


def category_counts(frame: pd.DataFrame) -> dict[str, pd.Series]:
    """Rows per value of each categorical column (missing values left out): what one
    partition of the training rows adds to the vocabularies (fit_vocabularies)."""
    out = {}
    for col in CATEGORICAL:
        counts = pd.Series(frame[col]).value_counts()
        counts = counts[counts > 0]
        out[col] = counts.set_axis(pd.Index(counts.index.to_numpy().tolist(), dtype=object))
    return out


def fit_vocabularies(parts: list[dict[str, pd.Series]], min_count: int) -> dict[str, list]:
    """The vocabularies of the training rows from the category_counts of their partitions."""
    out = {}
    for col in CATEGORICAL:
        counts = [part[col] for part in parts]
        added = counts[0] if len(counts) == 1 else pd.concat(counts).groupby(level=0).sum()
        out[col] = _vocabulary(added, min_count)
    return out


def encode(values: pd.Series | np.ndarray, vocabulary: list | pd.Index) -> np.ndarray:
    """Codes from a fitted vocabulary (a list, or its pd.Index): unseen -> UNSEEN, missing ->
    MISSING."""
    values = pd.Series(values) if not isinstance(values, pd.Series) else values
    if isinstance(values.dtype, pd.CategoricalDtype):
        inverse, uniques = values.cat.codes.to_numpy(), values.cat.categories
    else:
        inverse, uniques = pd.factorize(values, use_na_sentinel=True)
    index = vocabulary if isinstance(vocabulary, pd.Index) else pd.Index(vocabulary)
    found = index.get_indexer(pd.Index(uniques)) if len(uniques) else []
    mapped = np.where(np.asarray(found) >= 0, np.asarray(found) + FIRST_CODE, UNSEEN)
    return np.append(mapped, MISSING).astype(np.int16)[inverse]  # inverse -1 = missing


def _composite(
    frame: pd.DataFrame | dict, columns: tuple[str, ...], radix: dict[str, int] | None = None
) -> np.ndarray:
    """One int64 key per row from one or two integer-coded columns (-1 allowed).

    `radix` bounds a column's values + 1 (a categorical's codes): its pairs then stay small
    enough to be counted without hashing."""
    key = np.asarray(frame[columns[0]], dtype=np.int64) + 1
    for col in columns[1:]:
        key = key * (radix or {}).get(col, 1 << 24) + (np.asarray(frame[col], dtype=np.int64) + 1)
    return key


def _radix(vocabularies: dict[str, list]) -> dict[str, int]:
    """Codes of a categorical are 0 .. FIRST_CODE + len(vocabulary) - 1, so code + 1 is below."""
    return {col: FIRST_CODE + len(vocab) + 1 for col, vocab in vocabularies.items()}


# Keys below this are counted in plain arrays indexed by the key (member, song, artist):
# no hashing. Pairs of keys are larger and go through a hash index.
_DENSE_KEYS = 1 << 24


@dataclass
class KeyStats:
    """Counts and target sums per key, fitted on the training part.

    `index` holds the keys seen, sorted: a key's slot in counts / sums is its position there;
    None means the key is its own slot. Sorted keys are found by binary search, and equal keys
    get equal slots however the rows were partitioned."""

    index: pd.Index | None
    counts: np.ndarray
    sums: np.ndarray

    @classmethod
    def fit(cls, key: np.ndarray, target: np.ndarray) -> KeyStats:
        return cls.fit_slots(key, target)[0]

    @classmethod
    def fit_slots(cls, key: np.ndarray, target: np.ndarray) -> tuple[KeyStats, np.ndarray]:
        """fit(), and the slot of each row's key (what slots(key) would look up again)."""
        if len(key) and key.min() >= 0 and key.max() < _DENSE_KEYS:
            index, slots, size = None, key, int(key.max()) + 1
        else:
            # np.unique sorts where it returns the positions: 2x faster than pd.factorize.
            uniques, slots = np.unique(key, return_inverse=True)
            index, size = pd.Index(uniques), len(uniques)
        # One more slot, always 0: where slot -1 (a key not seen in training) reads from.
        counts, sums = _count_and_sum(slots, target, size + 1)
        return cls(index, counts, sums), slots

    @classmethod
    def merge(cls, parts: list[KeyStats]) -> KeyStats:
        """The statistics of the rows of all parts together: equal to fit() on all of them,
        whichever layout each part has (see compact)."""
        if all(p.index is None for p in parts):  # dense: add the arrays up
            size = max(len(p.counts) for p in parts)
            counts, sums = np.zeros(size), np.zeros(size)
            for p in parts:
                counts[: len(p.counts)] += p.counts
                sums[: len(p.sums)] += p.sums
            return cls(None, counts, sums)
        keys, counts, sums = (
            np.concatenate(x) for x in zip(*(p.seen() for p in parts), strict=True)
        )
        uniques = _unique(keys)
        slots = np.searchsorted(uniques, keys)  # each part's keys are sorted: a forward walk
        counts = np.bincount(slots, weights=counts, minlength=len(uniques) + 1)
        sums = np.bincount(slots, weights=sums, minlength=len(uniques) + 1)
        if len(uniques) and uniques[0] >= 0 and uniques[-1] < _DENSE_KEYS:
            dense = np.zeros((2, int(uniques[-1]) + 2))
            dense[:, uniques] = counts[:-1], sums[:-1]
            return cls(None, dense[0], dense[1])
        return cls(pd.Index(uniques), counts, sums)

    def compact(self) -> KeyStats:
        """The same statistics holding the seen keys only: what a partition sends to be
        merged, as small as its keys however wide their range (a dense layout is not)."""
        if self.index is not None:
            return self
        keys, counts, sums = self.seen()
        return KeyStats(pd.Index(keys), np.append(counts, 0.0), np.append(sums, 0.0))

    def seen(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The keys seen in training, with their counts and target sums."""
        if self.index is not None:
            return self.index.to_numpy(), self.counts[:-1], self.sums[:-1]
        keys = np.flatnonzero(self.counts[:-1])
        return keys.astype(np.int64), self.counts[keys], self.sums[keys]

    @property
    def n_keys(self) -> int:
        """How many distinct keys the training part has."""
        return len(self.index) if self.index is not None else int(np.count_nonzero(self.counts))

    def slots(self, key: np.ndarray) -> np.ndarray:
        """Slot of each key in counts / sums; -1 for keys never seen in training."""
        if self.index is not None:
            return _find(self.index.to_numpy(), key)
        return np.where((key >= 0) & (key < len(self.counts) - 1), key, -1)

    def at(self, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Counts and target sums at slots (slot -1: zeros)."""
        return self.counts[slots], self.sums[slots]


def _unique(key: np.ndarray) -> np.ndarray:
    """The sorted unique keys, by a sort: np.unique hashes where it is not asked for the
    positions, 60x slower than numpy's vectorised sort on 4 M keys in sorted runs (numpy 2.4)."""
    ordered = np.sort(key)
    first = np.empty(len(ordered), dtype=bool)
    first[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    return ordered[first]


def _find(uniques: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Position of each key in sorted unique keys; -1 where it is not there. The keys are sorted
    first, so the binary searches walk the uniques forward: at full scale (1.5 M keys in 3.9 M)
    4x faster than a hash index of the uniques, which would be built for the call."""
    found = np.full(len(key), -1, dtype=np.intp)
    if not len(uniques) or not len(key):
        return found
    order = np.argsort(key)
    wanted = key[order]
    at = np.minimum(np.searchsorted(uniques, wanted), len(uniques) - 1)
    found[order] = np.where(uniques[at] == wanted, at, -1)
    return found


def _count_and_sum(
    slots: np.ndarray, target: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Rows and target sum per slot."""
    counts = np.bincount(slots, minlength=size).astype(np.float64)
    return counts, np.bincount(slots, weights=target, minlength=size)


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
    _indexes: dict[str, pd.Index] = field(default_factory=dict, repr=False, compare=False)

    def indexes(self) -> dict[str, pd.Index]:
        """Each vocabulary as a pd.Index, made once (encoding then only looks values up)."""
        if not self._indexes:
            self._indexes.update({c: pd.Index(v) for c, v in self.vocabularies.items()})
        return self._indexes


_KEY_COLUMNS = ("member_key", "song_key", "artist_key")


def _coded(
    frame: pd.DataFrame, vocabularies: dict[str, list] | dict[str, pd.Index]
) -> dict[str, np.ndarray]:
    """The key columns and the codes of the categorical columns (no copy of the frame)."""
    out = {col: encode(frame[col], vocabularies[col]) for col in CATEGORICAL}
    for col in _KEY_COLUMNS:
        out[col] = np.asarray(frame[col])
    return out


# The count feature each key's training statistics give: (name, divided by the member's plays)
_COUNT_FEATURES = {
    "te_member": ("member_plays", False),
    "te_song": ("song_plays", False),
    "te_artist": ("artist_plays", False),
    "te_member_genre": ("member_genre_share", True),
    "te_member_artist": ("member_artist_share", True),
    "te_member_source": (None, False),
    "member_language": ("member_language_share", True),
}


# Every statistic the encoder fits: the target encodings' keys and one more for a share.
STAT_KEYS: dict[str, tuple[str, ...]] = {
    **TARGET_KEYS,
    "member_language": ("member_key", "language"),
}


@dataclass(frozen=True)
class Folds:
    """Each training row's fold of the out-of-fold target encoding, and the number of folds."""

    of_row: np.ndarray
    count: int


def key_stats(
    frame: pd.DataFrame, vocabularies: dict[str, list], folds: Folds | None = None
) -> dict[str, KeyStats]:
    """Counts and target sums of every statistic's key in these training rows; with `folds`,
    of each target encoding's (key, fold) pairs: what out-of-fold encoding takes away. A
    partition's statistics add up with KeyStats.merge."""
    names = TARGET_KEYS if folds is not None else STAT_KEYS
    return {name: fitted for name, (fitted, _) in _fit(frame, vocabularies, names, folds).items()}


def _fit(
    frame: pd.DataFrame, vocabularies: dict[str, list], names: Iterable[str], folds: Folds | None
) -> dict[str, tuple[KeyStats, np.ndarray]]:
    """KeyStats.fit_slots of the named statistics' keys (with `folds`: (key, fold) pairs)."""
    coded, radix = _coded(frame, vocabularies), _radix(vocabularies)
    y = frame["target"].to_numpy(dtype=np.float64)
    return {
        name: KeyStats.fit_slots(_in_folds(_composite(coded, STAT_KEYS[name], radix), folds), y)
        for name in names
    }


def _in_folds(key: np.ndarray, folds: Folds | None) -> np.ndarray:
    """One key per (key, fold) pair: key * folds + fold."""
    return key if folds is None else key * folds.count + folds.of_row


def encoder_of(
    vocabularies: dict[str, list], stats: dict[str, KeyStats], smoothing: float
) -> Encoder:
    """The encoder of fitted vocabularies and statistics; the prior is the training rows'
    replay rate (every row has a member key)."""
    member = stats["te_member"]
    return Encoder(vocabularies, float(member.sums.sum() / member.counts.sum()), smoothing, stats)


def fit(train: pd.DataFrame, min_count: int, smoothing: float) -> Encoder:
    """Fit vocabularies, counts and target statistics on the joined training rows."""
    vocabularies = fit_vocabularies([category_counts(train)], min_count)
    return encoder_of(vocabularies, key_stats(train, vocabularies), smoothing)


def transform(
    frame: pd.DataFrame,
    encoder: Encoder,
    folds: Folds | None = None,
    fold_stats: dict[str, KeyStats] | None = None,
    slots: dict[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """Model features for joined rows. For the training rows themselves pass their `folds`:
    their target encodings then come from the other folds only (out-of-fold), so a row's own
    target never feeds its features. `fold_stats` are the (key, fold) statistics of all the
    training rows (key_stats with folds); by default, of `frame`'s rows. `slots` are where
    the rows' keys are in the encoder's statistics, if known (KeyStats.fit_slots on these rows):
    they are then not looked up again."""
    coded = _coded(frame, encoder.indexes())
    out = {col: coded[col] for col in CATEGORICAL}
    for col in NUMERIC:
        out[col] = np.asarray(frame[col], dtype=np.float32)
    radix = _radix(encoder.vocabularies)
    y = frame["target"].to_numpy(dtype=np.float64) if folds is not None else None
    member_plays = None
    # One key at a time, its temporaries freed before the next: memory stays flat at scale.
    for name, cols in STAT_KEYS.items():
        key = _composite(coded, cols, radix)
        slot = slots[name] if slots is not None else encoder.stats[name].slots(key)
        n, s = encoder.stats[name].at(slot)
        if name == "te_member":
            member_plays = np.maximum(n, 1.0)
        count, share = _COUNT_FEATURES[name]
        if count is not None:
            out[count] = (n / member_plays if share else n).astype(np.float32)
        if name in TARGET_KEYS:
            if folds is not None:
                if fold_stats is None:  # the (key, fold) statistics of these very rows
                    size = len(encoder.stats[name].counts)
                    own_n, own_s = _own_fold(slot, y, folds, size)
                else:
                    own = fold_stats[name]
                    own_n, own_s = own.at(own.slots(_in_folds(key, folds)))
                n, s = n - own_n, s - own_s
            out[name] = smoothed_rate(s, n, encoder.prior, encoder.smoothing)
        del key, slot, n, s
    return pd.DataFrame({col: out[col] for col in FEATURES}, copy=False)


def _rows_by_fold(folds: Folds) -> list[np.ndarray]:
    """The row numbers of each fold."""
    order = np.argsort(folds.of_row, kind="stable")
    bounds = np.searchsorted(folds.of_row[order], np.arange(folds.count + 1))
    return [order[bounds[f] : bounds[f + 1]] for f in range(folds.count)]


def _own_fold(
    slot: np.ndarray, y: np.ndarray, folds: Folds, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Rows and target sum of each row's key within the row's own fold, counted over the keys'
    slots (-1: unseen) in plain arrays: all (slot, fold) cells at once where they are few, else
    fold by fold."""
    if (size + 1) * folds.count <= _DENSE_KEYS:
        cell = (slot + 1) * folds.count + folds.of_row
        counts, sums = _count_and_sum(cell, y, (size + 1) * folds.count)
        return counts[cell], sums[cell]
    own_n, own_s = np.empty(len(slot)), np.empty(len(slot))
    for rows in _rows_by_fold(folds):
        cell = slot[rows] + 1
        counts, sums = _count_and_sum(cell, y[rows], size + 1)
        own_n[rows], own_s[rows] = counts[cell], sums[cell]
    return own_n, own_s


def fit_training(
    before: pd.DataFrame,
    last: pd.DataFrame,
    min_count: int,
    smoothing: float,
    folds: tuple[int, int],
    on_features: Callable[[pd.DataFrame, pd.DataFrame], None] | None = None,
) -> tuple[Encoder, pd.DataFrame, pd.DataFrame]:
    """The encoder of eval and test (fitted on every training row: `before`, the rows a model is
    fitted on, and `last`, the early-stopping rows after them), and the features of the two:
    `before` out-of-fold (`folds` = number, seed), `last` with the statistics of the rows before
    it only, as eval's come from the rows before eval: a row's own period never feeds its
    encodings there, so early stopping sees what eval will see. `on_features` is called with the
    two as soon as they are made, before the encoder is fitted (preprocess starts writing them)."""
    counts = [category_counts(before), category_counts(last)]
    vocabularies = fit_vocabularies(counts[:1], min_count)
    fitted = _fit(before, vocabularies, STAT_KEYS, None)
    past = encoder_of(vocabularies, {n: f[0] for n, f in fitted.items()}, smoothing)
    slots = {name: f[1] for name, f in fitted.items()}
    n = len(before)
    before_x = transform(before, past, Folds(assign_folds(0, n, *folds), folds[0]), None, slots)
    last_x = transform(last, past)
    del fitted, slots
    if on_features is not None:
        on_features(before_x, last_x)
    # Every row's encoder, as merged statistics of the two parts (what the dask engine merges,
    # too): the keys of members, songs and artists do not depend on the vocabularies, so the
    # statistics of `before` are the past encoder's; the others count `before` anew.
    vocabularies = fit_vocabularies(counts, min_count)
    plain = [n for n, cols in STAT_KEYS.items() if set(cols) <= {*_KEY_COLUMNS}]
    anew = {
        n: f
        for n, (f, _) in _fit(
            before, vocabularies, [n for n in STAT_KEYS if n not in plain], None
        ).items()
    }
    stats = {
        name: KeyStats.merge([anew[name] if name in anew else past.stats[name], fitted_last])
        for name, (fitted_last, _) in _fit(last, vocabularies, STAT_KEYS, None).items()
    }
    return encoder_of(vocabularies, stats, smoothing), before_x, last_x


def assign_folds(start: int, stop: int, n_folds: int, seed: int) -> np.ndarray:
    """Fold number of training rows start .. stop - 1, reproducible from the seed: a hash of
    the row's position (splitmix64), so any range of rows (a partition on a cluster) gets the
    same folds without drawing the rows before it."""
    mixed = np.arange(start + 1, stop + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    mixed += np.uint64(seed * 0xD1B54A32D192ED03 % (1 << 64))
    for shift, multiplier in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB)):
        mixed ^= mixed >> np.uint64(shift)
        mixed *= np.uint64(multiplier)
    mixed ^= mixed >> np.uint64(31)
    return (mixed % np.uint64(n_folds)).astype(np.int8)


def slices(x: pd.DataFrame) -> dict[str, np.ndarray]:
    """The eval rows by cold start: whether the training part had their member and their song
    (member_plays / song_plays count their rows there): known, new_member, new_song, both_new."""
    member = np.asarray(x["member_plays"]) > 0
    song = np.asarray(x["song_plays"]) > 0
    return {
        "known": member & song,
        "new_member": ~member & song,
        "new_song": member & ~song,
        "both_new": ~member & ~song,
    }
