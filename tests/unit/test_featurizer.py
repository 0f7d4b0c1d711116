"""kkbox.featurizer: the fitted featurizer as files, and raw plays turned into the features that
preprocess makes and the problem's flags (on the synthetic Kaggle-shaped tables of
tests/bundles.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from cd4ml import bundle
from cd4ml.io import UserError
from cd4ml.problem import Features, Featurizer
from kkbox import PROBLEM, features, featurizer
from tests.bundles import COLD, NEW_SONG, Fitted, fit_featurizer


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> Fitted:
    return fit_featurizer(tmp_path_factory.mktemp("featurizer"))


@pytest.fixture
def copy(fitted: Fitted, tmp_path: Path) -> Path:
    """A copy of the saved featurizer that a test may damage."""
    return Path(shutil.copytree(fitted.folder, tmp_path / "featurizer"))


def rows_of(table: pa.Table, pairs: list[tuple[str, str]]) -> list[int]:
    """Row numbers of these (msno, song_id) pairs in a plays table."""
    found = list(zip(table["msno"].to_pylist(), table["song_id"].to_pylist(), strict=True))
    return [found.index(pair) for pair in pairs]


def test_saved_files_are_the_declared_ones(fitted):
    assert sorted(p.name for p in fitted.folder.iterdir()) == sorted(featurizer.FILES)


def test_loaded_featurizer_gives_exactly_the_features_preprocess_made(fitted):
    loaded = featurizer.load(fitted.folder)
    assert isinstance(loaded, Featurizer)  # the problem interface's protocol
    assert isinstance(PROBLEM.load_featurizer(fitted.folder), featurizer.Featurizer)
    got = loaded.transform(fitted.eval_raw.drop(["target"]))  # raw strings, not dictionaries
    assert isinstance(got, Features)
    assert list(got.x.columns) == features.FEATURES and len(got.x) == fitted.eval_raw.num_rows
    pd.testing.assert_frame_equal(got.x, fitted.eval_x, check_exact=True)


def test_the_flags_name_the_rows_of_members_and_songs_it_does_not_know(fitted):
    loaded = featurizer.load(fitted.folder)
    got = loaded.transform(fitted.eval_raw)
    assert tuple(got.flags) == PROBLEM.flags
    member_key, song_key = loaded.keys(fitted.eval_raw)
    np.testing.assert_array_equal(got.flags["unknown_member"], member_key < 0)
    np.testing.assert_array_equal(got.flags["unknown_song"], song_key < 0)
    assert all(flag.dtype == bool and len(flag) == len(got.x) for flag in got.flags.values())
    # COLD: m-new / s-new are in no table, m-idle / s-idle are (never played); NEW_SONG's
    # member is known, its song is not.
    rows = rows_of(fitted.eval_raw, [*COLD, NEW_SONG])
    assert got.flags["unknown_member"][rows].tolist() == [True, False, False]
    assert got.flags["unknown_song"][rows].tolist() == [True, False, True]
    assert got.flags["unknown_member"].sum() == 1 and got.flags["unknown_song"].sum() == 2


def test_model_features_of_known_keys_are_the_transforms_features(fitted):
    loaded = featurizer.load(fitted.folder)
    keys = loaded.keys(fitted.eval_raw)
    pd.testing.assert_frame_equal(
        loaded.model_features(fitted.eval_raw, keys),
        loaded.transform(fitted.eval_raw).x,
        check_exact=True,
    )


def test_the_example_is_a_known_row_of_the_request_schema(fitted):
    loaded = featurizer.load(fitted.folder)
    row = loaded.example()
    assert PROBLEM.Row.model_validate(row).model_dump() == row
    # The first member and song of the tables it joins (members.csv's, songs.csv's order)
    assert row == {"msno": "m000", "song_id": "s000", **dict.fromkeys(features.SOURCE)}
    got = loaded.transform(bundle.rows_table([row], bundle.input_fields(PROBLEM.Row)))
    assert not any(flag[0] for flag in got.flags.values())
    assert len(got.x) == 1 and list(got.x.columns) == features.FEATURES


def test_warm_up_builds_the_lookups_and_changes_nothing(fitted):
    loaded = featurizer.load(fitted.folder)
    before = loaded.transform(fitted.eval_raw).x
    fresh = featurizer.load(fitted.folder)
    fresh.warm_up()
    assert set(fresh._indexes) == {"members", "songs"} and set(fresh._joinable) == {
        "members",
        "songs",
    }
    pd.testing.assert_frame_equal(fresh.transform(fitted.eval_raw).x, before, check_exact=True)


def test_a_saved_loaded_featurizer_saves_the_same_featurizer(fitted, tmp_path):
    loaded = featurizer.load(fitted.folder)
    again = tmp_path / "again"
    featurizer.save(
        again,
        loaded.encoder,
        loaded.member_ids,
        loaded.member_attrs,
        loaded.song_ids,
        loaded.song_attrs,
    )
    assert sorted(p.name for p in again.iterdir()) == sorted(featurizer.FILES)
    assert json.loads((again / "encoder.json").read_text()) == json.loads(
        (fitted.folder / "encoder.json").read_text()
    )
    for name in ("members.parquet", "songs.parquet"):
        assert pq.read_table(again / name).equals(pq.read_table(fitted.folder / name)), name

    def stats(folder: Path) -> pd.DataFrame:
        """stats.parquet's rows, in one order (the statistics' order may differ)."""
        frame = pq.read_table(folder / "stats.parquet").to_pandas()
        frame["name"] = frame["name"].astype(str)
        return frame.sort_values(["name", "key"], ignore_index=True)

    pd.testing.assert_frame_equal(stats(again), stats(fitted.folder), check_exact=True)
    reloaded = featurizer.load(again).transform(fitted.eval_raw)
    pd.testing.assert_frame_equal(reloaded.x, fitted.eval_x, check_exact=True)


def test_loaded_encoder_equals_the_fitted_one(fitted):
    loaded = featurizer.load(fitted.folder).encoder
    assert loaded.vocabularies == fitted.encoder.vocabularies
    assert (loaded.prior, loaded.smoothing) == (fitted.encoder.prior, fitted.encoder.smoothing)
    assert set(loaded.stats) == set(fitted.encoder.stats)
    for name, stat in fitted.encoder.stats.items():
        np.testing.assert_array_equal(loaded.stats[name].counts, stat.counts)
        np.testing.assert_array_equal(loaded.stats[name].sums, stat.sums)
        assert (loaded.stats[name].index is None) == (stat.index is None)


def test_unknown_and_never_played_members_and_songs_get_the_cold_start_values(fitted):
    loaded = featurizer.load(fitted.folder)
    x = loaded.transform(fitted.eval_raw).x
    prior = features.smoothed_rate(np.zeros(1), np.zeros(1), loaded.encoder.prior, 20.0)[0]
    assert prior == pytest.approx(fitted.encoder.prior, abs=1e-7)
    cold = x.iloc[rows_of(fitted.eval_raw, COLD)]
    assert (cold[features.COUNTS] == 0).all().all()
    assert (cold[list(features.TARGET_KEYS)] == prior).all().all()
    # The member and song attributes of ids not in the tables are missing, not unseen.
    assert cold["city"].iloc[0] == features.MISSING
    assert cold["first_genre"].iloc[0] == features.MISSING
    # A known member with a new song: the member's statistics are warm, the song's are not.
    (row,) = rows_of(fitted.eval_raw, [NEW_SONG])
    warm = x.iloc[row]
    assert warm["member_plays"] > 0 and warm["te_member"] != prior
    assert warm["song_plays"] == 0 and warm["artist_plays"] == 0
    assert warm["te_song"] == prior and warm["te_artist"] == prior


def test_warm_rows_do_not_get_the_cold_start_values(fitted):
    x = featurizer.load(fitted.folder).transform(fitted.eval_raw).x
    prior = np.float32(fitted.encoder.prior)
    warm = x.iloc[: -len(COLD) - 1]
    assert (warm["member_plays"] > 0).all() and (warm["song_plays"] > 0).all()
    assert (warm["te_song"] != prior).mean() > 0.9


@pytest.mark.parametrize("name", featurizer.FILES)
def test_a_missing_file_is_a_user_error_naming_it(copy, name):
    (copy / name).unlink()
    with pytest.raises(UserError, match="not found") as err:
        featurizer.load(copy)
    assert str(copy / name) in str(err.value)


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("{not json", "not a featurizer spec (JSONDecodeError"),
        ("[]", "not a featurizer spec (TypeError"),
        ('{"prior": 0.5}', "not a featurizer spec (KeyError"),
    ],
)
def test_an_encoder_json_that_is_no_spec_is_a_user_error_naming_it(copy, content, says):
    (copy / "encoder.json").write_text(content)
    with pytest.raises(UserError, match=r"encoder\.json: ") as err:
        featurizer.load(copy)
    assert says in str(err.value) and str(copy / "encoder.json") in str(err.value)
    assert "\n" not in str(err.value)


def edit_spec(folder: Path, **changes: object) -> dict:
    spec = json.loads((folder / "encoder.json").read_text())
    spec.update(changes)
    (folder / "encoder.json").write_text(json.dumps(spec))
    return spec


def test_a_featurizer_made_for_other_features_is_refused(copy):
    edit_spec(copy, features=features.FEATURES[:-1])
    with pytest.raises(UserError, match="made for other features than this code's"):
        featurizer.load(copy)


def test_a_featurizer_without_a_target_statistic_is_refused(copy):
    spec = json.loads((copy / "encoder.json").read_text())
    del spec["stats"]["te_song"]
    edit_spec(copy, stats=spec["stats"])
    with pytest.raises(UserError, match=r"stats\.parquet: no statistics for \['te_song'\]"):
        featurizer.load(copy)


def test_a_featurizer_without_the_member_language_statistic_is_refused(copy):
    spec = json.loads((copy / "encoder.json").read_text())
    del spec["stats"]["member_language"]
    edit_spec(copy, stats=spec["stats"])
    with pytest.raises(UserError, match="member_language"):
        featurizer.load(copy)


def test_statistics_whose_keys_are_not_sorted_are_refused(copy):
    # Hashed keys are found by binary search: unsorted ones would find wrong rows silently.
    path = copy / "stats.parquet"
    table = pq.read_table(path)
    rows = np.flatnonzero(pc.equal(table["name"], "te_member_artist").to_numpy(False))
    assert len(rows) > 1
    keys = table["key"].to_numpy().copy()
    keys[rows[[0, 1]]] = keys[rows[[1, 0]]]
    pq.write_table(table.set_column(1, "key", pa.array(keys)), path)
    with pytest.raises(UserError, match=r"stats\.parquet: the keys of 'te_member_artist' are not"):
        featurizer.load(copy)


def test_a_damaged_parquet_file_is_a_user_error_naming_it(copy):
    (copy / "songs.parquet").write_bytes(b"PAR1 not really parquet PAR1")
    with pytest.raises(UserError) as err:
        featurizer.load(copy)
    assert str(copy / "songs.parquet") in str(err.value)


def test_small_and_large_batches_find_the_same_keys(fitted, monkeypatch):
    # Small batches look ids up in a per-process hash index, large ones in Arrow's hash join.
    loaded = featurizer.load(fitted.folder)
    small = loaded.transform(fitted.eval_raw)
    monkeypatch.setattr(featurizer, "SMALL_BATCH", 0)
    large = featurizer.load(fitted.folder).transform(fitted.eval_raw)
    pd.testing.assert_frame_equal(small.x, large.x)
    for name in PROBLEM.flags:
        np.testing.assert_array_equal(small.flags[name], large.flags[name])
    assert (loaded.keys(fitted.eval_raw)[1] == -1).sum() > 0  # the cold rows are in the batch


def test_no_identifier_is_a_model_feature(fitted):
    """The ML Test Score's Data 4 (meta-level requirements): a person's id (the problem's
    `private` fields) never reaches the model as such, only what is learnt about it."""
    assert PROBLEM.private and not set(PROBLEM.private) & set(fitted.eval_x.columns)
    assert all(x.dtype.kind in "biuf" for _, x in fitted.eval_x.items())  # no raw text either
