"""kkbox.features: the feature code, on tiny inline frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kkbox import features as F


def test_bd_outliers_and_zero_become_missing():
    bd = pd.Series([0, 27, -43, 144, 1051, 5, 80, 81], dtype="int16")
    cleaned = F.clean_bd(bd)
    assert cleaned.isna().tolist() == [True, False, True, True, True, False, False, True]
    assert cleaned[1] == 27


def test_dates_parse_and_unknown_1970_is_missing():
    dates = F.yyyymmdd(pd.Series([20170101, 19700101, 20171340], dtype="int32"))
    assert dates[0] == pd.Timestamp("2017-01-01")
    assert dates[1:].isna().all()


def test_genre_parsing_first_genre_and_count():
    songs = pd.DataFrame(
        {
            "song_id": ["a", "b", "c"],
            "song_length": [1000, 2000, 3000],
            "genre_ids": ["465", "958|1609|2022", None],
            "artist_name": ["x", "y", "x"],
            "composer": [None, "p|q", "r"],
            "lyricist": [None, None, "s"],
            "language": [3.0, 52.0, -1.0],
        }
    )
    extra = pd.DataFrame(
        {"song_id": ["b", "a"], "name": ["n1", "n2"], "isrc": ["TWUM71200043", "USA169912345"]}
    )
    table = F.song_table(songs, extra)
    assert table["first_genre"].tolist()[:2] == ["465", "958"]
    assert pd.isna(table["first_genre"][2])
    assert table["genre_count"].tolist() == [1, 3, 0]
    assert table["composer_count"].tolist() == [0, 2, 1]
    assert table["isrc_country"].tolist()[:2] == ["US", "TW"]  # joined by song_id, not position
    assert table["isrc_year"].tolist()[:2] == [1999.0, 2012.0]
    assert table["artist_key"][0] == table["artist_key"][2]


def test_vocabulary_is_fitted_on_training_values_most_frequent_first():
    vocab = F.fit_vocabulary(pd.Series(["radio", "my library", "my library", None, "search"]), 1)
    assert vocab == ["my library", "radio", "search"]


def test_encoding_applies_training_codes_unchanged_and_reserves_unseen_and_missing():
    vocab = F.fit_vocabulary(pd.Series(["b", "a", "a"]), 1)
    train_codes = F.encode(pd.Series(["a", "b"]), vocab)
    eval_codes = F.encode(pd.Series(["b", "zzz", None, "a"]), vocab)
    # the same value gets the same code in every part; unseen and missing get reserved codes
    assert train_codes.tolist() == [F.FIRST_CODE, F.FIRST_CODE + 1]
    assert eval_codes.tolist() == [F.FIRST_CODE + 1, F.UNSEEN, F.MISSING, F.FIRST_CODE]


def test_min_count_sends_rare_categories_to_unseen():
    vocab = F.fit_vocabulary(pd.Series(["a", "a", "b"]), min_count=2)
    assert F.encode(pd.Series(["b"]), vocab).tolist() == [F.UNSEEN]


def _joined(n_rows: int, target: list[int], members: list[int], songs: list[int]) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "source_system_tab": ["my library"] * n_rows,
            "source_screen_name": ["Radio"] * n_rows,
            "source_type": ["radio"] * n_rows,
            "city": [1.0] * n_rows,
            "gender": [None] * n_rows,
            "registered_via": [7.0] * n_rows,
            "language": [3.0] * n_rows,
            "first_genre": ["465"] * n_rows,
            "isrc_country": ["TW"] * n_rows,
            "member_key": members,
            "song_key": songs,
            "artist_key": songs,
            "target": target,
        }
    )
    for col in F.NUMERIC:
        frame[col] = 1.0
    return frame


def test_features_of_eval_rows_do_not_depend_on_eval_targets():
    train = _joined(6, [1, 0, 1, 1, 0, 0], [0, 0, 1, 1, 2, 2], [0, 1, 0, 1, 0, 1])
    encoder = F.fit(train, min_count=1, smoothing=2.0)
    evaluation = _joined(3, [1, 1, 1], [0, 1, 3], [1, 0, 2])
    flipped = evaluation.assign(target=[0, 0, 0])
    pd.testing.assert_frame_equal(F.transform(evaluation, encoder), F.transform(flipped, encoder))


def test_target_encoding_uses_training_statistics_with_smoothing():
    train = _joined(4, [1, 1, 0, 0], [0, 0, 1, 1], [0, 1, 2, 3])
    encoder = F.fit(train, min_count=1, smoothing=2.0)
    out = F.transform(_joined(3, [0, 0, 0], [0, 1, 9], [0, 0, 0]), encoder)
    prior = 0.5
    assert out["te_member"].tolist() == pytest.approx([(2 + prior * 2) / 4, (0 + 1) / 4, prior])
    assert out["member_plays"].tolist() == [2, 2, 0]


def test_out_of_fold_encoding_never_sees_the_rows_own_target():
    train = _joined(4, [1, 0, 1, 0], [0, 0, 0, 0], [0, 1, 2, 3])
    encoder = F.fit(train, min_count=1, smoothing=1.0)
    folds = np.array([0, 1, 2, 3], dtype=np.int8)  # every row alone in its fold
    out = F.transform(train, encoder, F.Folds(folds, 4))
    # leave-one-out: a positive row sees 1 of 3 others positive, a negative row 2 of 3
    assert out["te_member"].tolist() == pytest.approx([(1 + 0.5) / 4, (2 + 0.5) / 4] * 2)


def test_transform_returns_exactly_the_declared_features_and_no_row_index():
    train = _joined(4, [1, 1, 0, 0], [0, 0, 1, 1], [0, 1, 2, 3])
    train.index = [10, 11, 12, 13]
    out = F.transform(train, F.fit(train, 1, 2.0))
    assert list(out.columns) == F.FEATURES
    assert "index" not in out.columns and "target" not in out.columns


def test_unknown_members_and_songs_get_the_prior_and_zero_counts():
    train = _joined(4, [1, 1, 1, 0], [0, 0, 1, 1], [0, 1, 0, 1])
    encoder = F.fit(train, min_count=1, smoothing=5.0)
    cold = F.transform(_joined(2, [0, 0], [7, 0], [0, 9]), encoder)  # new member; new song
    prior = encoder.prior
    assert prior == 0.75
    assert cold["member_plays"].tolist() == [0, 2] and cold["song_plays"].tolist() == [2, 0]
    assert cold["te_member"][0] == pytest.approx(prior)  # nothing known: the prior
    assert cold["te_song"][1] == pytest.approx(prior) and cold["te_artist"][1] == pytest.approx(
        prior
    )
    assert cold["te_member_artist"][1] == pytest.approx(prior)
    assert cold["member_artist_share"][1] == 0.0


def test_the_early_stopping_slice_is_encoded_from_the_rows_before_it_only():
    members = [0, 0, 0, 0, 1, 1, 1, 1, 0, 1]
    train = _joined(10, [1, 1, 0, 1, 0, 0, 1, 0, 1, 1], members, list(range(10)))
    encoder, before, last = F.fit_training(train.iloc[:8], train.iloc[8:], 1, 2.0, (2, 0))
    assert (len(before), len(last)) == (8, 2)
    # The slice's encodings: the statistics of rows 0-7, never the slice's own rows.
    past = F.fit(train.iloc[:8], 1, 2.0)
    pd.testing.assert_frame_equal(last, F.transform(train.iloc[8:], past))
    flipped = train.assign(target=[*train["target"][:8], 0, 0])
    _, _, last_flipped = F.fit_training(flipped.iloc[:8], flipped.iloc[8:], 1, 2.0, (2, 0))
    pd.testing.assert_frame_equal(last, last_flipped)
    # member 0 in rows 0-3: 3 of 4 replayed; smoothed towards the prior of rows 0-7 (0.5)
    assert last["te_member"][0] == pytest.approx((3 + 0.5 * 2) / (4 + 2))
    # Eval and test get the statistics of all 10 rows.
    assert encoder.prior == pytest.approx(0.6) and past.prior == pytest.approx(0.5)


def _random_joined(n_rows: int, seed: int) -> pd.DataFrame:
    """Joined rows with many members and songs, some unknown (key -1), for partition tests."""
    rng = np.random.default_rng(seed)
    members = rng.integers(-1, 40, n_rows)
    songs = rng.integers(-1, 300, n_rows)
    frame = _joined(n_rows, rng.integers(0, 2, n_rows).tolist(), members, songs)
    frame["artist_key"] = songs // 3
    frame["source_system_tab"] = pd.Categorical(rng.choice(["a", "b", "c", None], n_rows))
    return frame


def _assert_stats_equal(got: dict[str, F.KeyStats], want: dict[str, F.KeyStats]) -> None:
    assert list(got) == list(want)
    for name in want:
        assert (got[name].index is None) == (want[name].index is None), name
        if want[name].index is not None:
            pd.testing.assert_index_equal(got[name].index, want[name].index)
        np.testing.assert_array_equal(got[name].counts, want[name].counts)
        np.testing.assert_array_equal(got[name].sums, want[name].sums)


def test_statistics_of_partitions_add_up_to_those_of_all_rows():
    train = _random_joined(3000, 5)
    vocab = F.fit_vocabularies([F.category_counts(train)], 2)
    parts = [train.iloc[a:b] for a, b in ((0, 700), (700, 701), (701, 2500), (2500, 3000))]
    assert F.fit_vocabularies([F.category_counts(p) for p in parts], 2) == vocab
    whole = F.key_stats(train, vocab)
    merged = {
        name: F.KeyStats.merge([F.key_stats(p, vocab)[name] for p in parts]) for name in whole
    }
    _assert_stats_equal(merged, whole)
    # what partitions send: their seen keys only; merged, the same statistics
    compact = {
        name: F.KeyStats.merge([F.key_stats(p, vocab)[name].compact() for p in parts])
        for name in whole
    }
    _assert_stats_equal(compact, whole)
    one = {name: F.KeyStats.merge([stat.compact()]) for name, stat in whole.items()}
    _assert_stats_equal(one, whole)
    # dense parts (no unknown member) and a part with one merge into what all rows give
    known = train[train["member_key"] >= 0]
    mixed = [known.iloc[:1000], train.iloc[:0], train]
    _assert_stats_equal(
        {"m": F.KeyStats.merge([F.key_stats(p, vocab)["te_member"] for p in mixed])},
        {"m": F.key_stats(pd.concat(mixed), vocab)["te_member"]},
    )


def test_out_of_fold_features_of_a_partition_equal_those_of_all_rows():
    train = _random_joined(2000, 6)
    encoder = F.fit(train, 1, 3.0)
    folds = F.Folds(F.assign_folds(0, len(train), 5, 42), 5)
    whole = F.transform(train, encoder, folds)
    fold_stats = F.key_stats(train, encoder.vocabularies, folds)
    part = F.transform(
        train.iloc[500:900], encoder, F.Folds(F.assign_folds(500, 900, 5, 42), 5), fold_stats
    )
    pd.testing.assert_frame_equal(part, whole.iloc[500:900].reset_index(drop=True))


@pytest.mark.parametrize("dense_keys", [F._DENSE_KEYS, 64])
def test_out_of_fold_counts_are_those_of_the_fold_statistics(monkeypatch, dense_keys):
    # 64: every key is hashed and (slot, fold) cells are counted fold by fold.
    monkeypatch.setattr(F, "_DENSE_KEYS", dense_keys)
    train = _random_joined(2000, 7)
    encoder = F.fit(train, 1, 3.0)
    folds = F.Folds(F.assign_folds(0, len(train), 5, 42), 5)
    fold_stats = F.key_stats(train, encoder.vocabularies, folds)
    pd.testing.assert_frame_equal(
        F.transform(train, encoder, folds), F.transform(train, encoder, folds, fold_stats)
    )


@pytest.mark.parametrize("dense_keys", [F._DENSE_KEYS, 64])
def test_fit_training_gives_what_fitting_each_part_anew_gives(monkeypatch, dense_keys):
    monkeypatch.setattr(F, "_DENSE_KEYS", dense_keys)
    train = _random_joined(3000, 8)
    encoder, before, last = F.fit_training(train.iloc[:2700], train.iloc[2700:], 2, 3.0, (5, 1))
    whole = F.fit(train, 2, 3.0)
    assert encoder.vocabularies == whole.vocabularies and encoder.prior == whole.prior
    _assert_stats_equal(encoder.stats, whole.stats)
    past = F.fit(train.iloc[:2700], 2, 3.0)
    folds = F.Folds(F.assign_folds(0, 2700, 5, 1), 5)
    pd.testing.assert_frame_equal(before, F.transform(train.iloc[:2700], past, folds))
    pd.testing.assert_frame_equal(last, F.transform(train.iloc[2700:], past))


def test_fit_training_hands_the_training_features_over_before_it_returns():
    train = _random_joined(3000, 8)
    handed: list[tuple[pd.DataFrame, pd.DataFrame]] = []
    _, before, last = F.fit_training(
        train.iloc[:2700], train.iloc[2700:], 2, 3.0, (5, 1), lambda *parts: handed.append(parts)
    )
    assert len(handed) == 1 and handed[0][0] is before and handed[0][1] is last


@pytest.mark.parametrize("seed", range(4))
def test_hashed_keys_get_the_slots_of_their_sorted_order(seed, monkeypatch):
    monkeypatch.setattr(F, "_DENSE_KEYS", 1)  # every key hashed
    rng = np.random.default_rng(seed)
    key = rng.integers(-3, [5, 50, 1 << 40, 1 << 62][seed], 1000)
    stats, slots = F.KeyStats.fit_slots(key, np.ones(len(key)))
    want_slots, want_uniques = pd.factorize(key, sort=True)
    np.testing.assert_array_equal(stats.index, want_uniques)
    np.testing.assert_array_equal(slots, want_slots)
    np.testing.assert_array_equal(F._unique(key), want_uniques)
    assert len(F._unique(key[:0])) == 0


def test_hashed_keys_are_found_as_a_hash_index_finds_them():
    rng = np.random.default_rng(3)
    uniques = np.unique(rng.integers(0, 1 << 40, 500))
    stats = F.KeyStats(pd.Index(uniques), np.ones(len(uniques) + 1), np.ones(len(uniques) + 1))
    # seen keys, unseen ones between, below and above them, repeats, in no order
    key = rng.permutation(np.concatenate([uniques, uniques[:50] + 1, [-5, 1 << 41], uniques[:9]]))
    np.testing.assert_array_equal(stats.slots(key), pd.Index(uniques).get_indexer(key))
    assert len(stats.slots(key[:0])) == 0
    nothing = F.KeyStats(pd.Index(np.array([], dtype=np.int64)), np.zeros(1), np.zeros(1))
    np.testing.assert_array_equal(nothing.slots(key[:3]), [-1, -1, -1])


def test_folds_are_a_function_of_the_row_position_and_the_seed():
    folds = F.assign_folds(0, 10_000, 5, 42)
    np.testing.assert_array_equal(F.assign_folds(1234, 5678, 5, 42), folds[1234:5678])
    assert sorted(np.bincount(folds)) == pytest.approx([2000] * 5, rel=0.05)
    assert not np.array_equal(F.assign_folds(0, 10_000, 5, 43), folds)
    assert folds.dtype == np.int8 and set(folds) == set(range(5))


def test_slices_group_the_rows_by_what_the_training_part_knew():
    x = pd.DataFrame({"member_plays": [3, 0, 5, 0, 1], "song_plays": [2, 4, 0, 0, 1]})
    groups = F.slices(x)
    assert {name: rows.tolist() for name, rows in groups.items()} == {
        "known": [True, False, False, False, True],
        "new_member": [False, True, False, False, False],
        "new_song": [False, False, True, False, False],
        "both_new": [False, False, False, True, False],
    }
    # Every row is in exactly one group.
    assert (sum(rows.astype(int) for rows in groups.values()) == 1).all()
