"""Data tests of the synthetic KKBox generator on tiny data: Kaggle's schema and quirks, the
signal, the positive rate asked for, determinism."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from cd4ml import params
from cd4ml.io import write_csv
from kkbox import synth
from kkbox.tables import CONTRACT, TRUTH
from tests.project import ROOT, write_params

KAGGLE_COLUMNS = {
    "train.csv": [
        "msno",
        "song_id",
        "source_system_tab",
        "source_screen_name",
        "source_type",
        "target",
    ],
    "test.csv": [
        "id",
        "msno",
        "song_id",
        "source_system_tab",
        "source_screen_name",
        "source_type",
    ],
    "members.csv": [
        "msno",
        "city",
        "bd",
        "gender",
        "registered_via",
        "registration_init_time",
        "expiration_date",
    ],
    "songs.csv": [
        "song_id",
        "song_length",
        "genre_ids",
        "artist_name",
        "composer",
        "lyricist",
        "language",
    ],
    "song_extra_info.csv": ["song_id", "name", "isrc"],
}


def _generate(out: Path, scale: str = "tiny") -> None:
    subprocess.run(
        [sys.executable, "-m", "cd4ml.generate", "--scale", scale, "--out", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gen") / "data"
    _generate(out)
    return out


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=False, na_values=[""], dtype=str)


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_files_have_kaggles_exact_columns(tiny):
    for name, columns in KAGGLE_COLUMNS.items():
        assert (tiny / name).read_text(encoding="utf-8").splitlines()[0] == ",".join(columns)
        assert list(CONTRACT.tables[name].columns) == columns


def test_same_seed_gives_byte_identical_files(tiny, tmp_path):
    _generate(tmp_path / "again")
    assert _digest(tiny) == _digest(tmp_path / "again")


def test_a_different_seed_gives_different_data(tiny, tmp_path):
    params = tmp_path / "params.yaml"
    write_params(params, seed=7, positive_rate=0.5)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "cd4ml.generate",
            "--scale",
            "tiny",
            "--params",
            str(params),
            "--out",
            str(tmp_path / "other"),
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    assert _digest(tiny)["train.csv"] != _digest(tmp_path / "other")["train.csv"]


def test_ids_look_like_kaggles_base64(tiny):
    members = _read(tiny / "members.csv")
    ids = members["msno"]
    assert ids.str.len().eq(44).all() and ids.str.endswith("=").all()
    joined = "".join(ids)
    assert "/" in joined and "+" in joined
    assert ids.is_unique


def test_quirks_of_the_real_data_are_there(tiny):
    members = _read(tiny / "members.csv")
    songs = _read(tiny / "songs.csv")
    train = _read(tiny / "train.csv")
    bd = members["bd"].astype(int)
    assert 0.5 < (bd == 0).mean() < 0.66
    assert members["gender"].isna().mean() > 0.45
    assert (members["city"].astype(int) == 1).mean() > 0.5
    assert set(members["registered_via"].astype(int)) <= {3, 4, 7, 9, 13}
    assert 0.38 < songs["composer"].isna().mean() < 0.46
    assert 0.69 < songs["lyricist"].isna().mean() < 0.77
    assert 0.01 < songs["genre_ids"].isna().mean() < 0.03
    assert songs["genre_ids"].str.contains("|", regex=False).mean() > 0.03
    assert songs["language"].dropna().str.endswith(".0").all()  # floats, as in Kaggle's file
    assert 200_000 < songs["song_length"].astype(int).median() < 270_000
    tabs = set(train["source_system_tab"].dropna())
    assert {"my library", "discover", "search", "radio", "null"} <= tabs
    assert train["source_system_tab"].isna().any()
    assert 0.4 < train["target"].astype(int).mean() < 0.6
    text = (tiny / "songs.csv").read_text(encoding="utf-8")
    assert '""' in text  # quoted names with embedded quotes
    assert any("\u4e00" <= ch <= "\u9fff" for ch in text[:20000])  # CJK


def test_dates_are_valid_yyyymmdd(tiny):
    members = _read(tiny / "members.csv")
    for col in ("registration_init_time", "expiration_date"):
        dates = pd.to_datetime(members[col], format="%Y%m%d", errors="coerce")
        assert dates.notna().all()
    assert members["registration_init_time"].str[:4].astype(int).between(2004, 2017).all()


def test_truth_file_is_aligned_and_gives_an_oracle_auc_in_range(tiny):
    train = _read(tiny / "train.csv")
    truth = pd.read_csv(tiny / TRUTH)
    assert len(truth) == len(train)
    oracle = roc_auc_score(train["target"].astype(int), truth["target_probability"])
    assert 0.75 <= oracle <= 0.85
    p = truth["target_probability"].to_numpy()
    assert np.isfinite(p).all() and (p > 0).all() and (p < 1).all()


@pytest.mark.parametrize("rate", [0.25, 0.5, 0.75])
def test_the_positive_rate_is_the_one_asked_for(rate):
    tables = synth.generate(synth.SCALES["tiny"], seed=2017, positive_rate=rate)
    truth = tables["train_truth.csv"]["target_probability"]
    assert abs(tables["train.csv"]["target"].mean() - rate) < 0.01
    # 0.5 keeps the logit centred on its median: close to, not exactly, a mean of 0.5.
    assert abs(truth.mean() - rate) < (0.01 if rate == 0.5 else 1e-5)
    oracle = roc_auc_score(tables["train.csv"]["target"], truth)
    assert 0.75 <= oracle <= 0.85  # the signal is the same, only its centre moves


def test_the_default_data_is_pinned(tmp_path):
    # sha256 of tiny data at seed 2017 with the default params. The time effects (issue 13:
    # entering members and songs, trends, source drift) changed it; nothing else may.
    tables = synth.generate(synth.SCALES["tiny"], seed=2017)
    for name in ("train.csv", "train_truth.csv"):
        write_csv(tables[name], tmp_path / name)
    assert _digest(tmp_path) == {
        "train.csv": "6c7b3d6eb2b5b33726242d5690c65c10c5ca3a7dc13da0ebeaca8e8fa88533c5",
        "train_truth.csv": "d41eabc8cdd1130429871f3e882187923ec5d00ca5f29fc4ee5af998c0593118",
    }


# --- time effects (issue 13): the data is not stationary ------------------------------------

STATIONARY = {
    "new_member_rows_eval": 0.0,
    "new_member_rows_test": 0.0,
    "new_song_rows_eval": 0.0,
    "new_song_rows_test": 0.0,
    "song_trend": 0.0,
    "member_trend": 0.0,
    "source_drift": 0.0,
}


def _train(**effects: float) -> dict:
    return synth.generate(synth.SCALES["tiny"], seed=2017, **effects)["train.csv"]


def _fifths(ids: np.ndarray, n_ids: int) -> np.ndarray:
    """Plays of each id in each fifth of the rows (5 x n_ids)."""
    q = len(ids) // 5
    return np.array([np.bincount(ids[i * q : (i + 1) * q], minlength=n_ids) for i in range(5)])


def test_unseen_members_and_songs_in_eval_and_test_rows_are_the_configured_shares(tiny):
    settings = params.section(ROOT / "params.yaml", "generate", synth.Generate)
    train, test = _read(tiny / "train.csv"), _read(tiny / "test.csv")
    cut = int(len(train) * 0.8)  # the eval split: the last 20 % of train rows
    for col, kind in (("msno", "member"), ("song_id", "song")):
        eval_unseen = ~train[col].iloc[cut:].isin(set(train[col].iloc[:cut]))
        test_unseen = ~test[col].isin(set(train[col]))
        want_eval = getattr(settings, f"new_{kind}_rows_eval")
        want_test = getattr(settings, f"new_{kind}_rows_test")
        # Songs add the long tail: catalogue songs that happen to be played for the first time.
        tail = 0.05 if kind == "song" else 0.015
        assert want_eval - 0.015 <= eval_unseen.mean() <= want_eval + tail, col
        assert want_test - 0.015 <= test_unseen.mean() <= want_test + tail, col


def test_no_newcomer_rows_leave_eval_members_seen():
    tables = synth.generate(synth.SCALES["tiny"], seed=2017, **STATIONARY)
    member = tables["train.csv"]["msno"].indices.to_numpy()
    cut = int(len(member) * 0.8)
    assert np.isin(member[cut:], member[:cut]).mean() > 0.995


def test_new_releases_rise_then_fade_and_song_popularity_trends():
    def stats(train: dict) -> tuple[np.ndarray, float]:
        song = train["song_id"].indices.to_numpy()
        plays = _fifths(song, len(train["song_id"].dictionary))
        entered = (plays[0] == 0) & (plays[1] > 0)  # first played in the second fifth
        share = plays[:, entered].sum(axis=1) / plays.sum(axis=1)
        early, late = plays[:2].sum(axis=0), plays[3:].sum(axis=0)
        busy = early + late >= 20
        return share, spearmanr(early[busy], late[busy])[0]

    share, rank_corr = stats(_train())
    assert share[1] > 0.12 and share[1] > 3 * share[4]  # big when new, a fraction of it later
    _, stationary_corr = stats(_train(**STATIONARY))
    # Each song's own trend reorders the charts between the first and the last 40 % of rows.
    assert rank_corr < stationary_corr - 0.15


def test_members_grow_more_active_or_fade():
    def moved(train: dict) -> tuple[float, float]:
        member = train["msno"].indices.to_numpy()
        plays = _fifths(member, len(train["msno"].dictionary))
        early, late = plays[:2].sum(axis=0), plays[3:].sum(axis=0)
        both = (early > 0) & (late > 0)
        ratio = late[both] / early[both] * early.sum() / late.sum()
        return spearmanr(early[both], late[both])[0], ((ratio > 2) | (ratio < 0.5)).mean()

    corr, share = moved(_train())
    stationary_corr, stationary_share = moved(_train(**STATIONARY))
    assert corr < stationary_corr - 0.1
    assert share > 0.25 and share > 2 * stationary_share


def test_the_source_mix_drifts_from_the_own_library_to_online_sources():
    def library_share(train: dict) -> tuple[float, float]:
        tab = np.asarray(train["source_system_tab"].dictionary_decode().to_pylist(), dtype=object)
        q = len(tab) // 5
        return (tab[:q] == "my library").mean(), (tab[-q:] == "my library").mean()

    first, last = library_share(_train())
    assert first - last > 0.03
    first, last = library_share(_train(**STATIONARY))
    assert abs(first - last) < 0.03
