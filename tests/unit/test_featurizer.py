"""kkbox.featurizer: the fitted featurizer as files, and raw plays turned into the features that
preprocess makes (on the synthetic Kaggle-shaped tables of tests/bundles.py)."""

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

from kkbox import features, featurizer
from cd4ml.io import UserError
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
    got = loaded.transform(fitted.eval_raw.drop(["target"]))  # raw strings, not dictionaries
    assert list(got.columns) == features.FEATURES and len(got) == fitted.eval_raw.num_rows
    pd.testing.assert_frame_equal(got, fitted.eval_x, check_exact=True)


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
    x = loaded.transform(fitted.eval_raw)
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
    x = featurizer.load(fitted.folder).transform(fitted.eval_raw)
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
    pd.testing.assert_frame_equal(small, large)
    assert (loaded.keys(fitted.eval_raw)[1] == -1).sum() > 0  # the cold rows are in the batch
