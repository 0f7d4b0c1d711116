"""The synthetic KKBox generator: Kaggle's schema and quirks, signal, determinism."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from kkbox import schema
from project import ROOT

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
        [sys.executable, "src/generate.py", "--scale", scale, "--out", str(out)],
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
        assert list(schema.TABLES[name]) == columns


def test_same_seed_gives_byte_identical_files(tiny, tmp_path):
    _generate(tmp_path / "again")
    assert _digest(tiny) == _digest(tmp_path / "again")


def test_a_different_seed_gives_different_data(tiny, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("generate:\n  seed: 7\n")
    subprocess.run(
        [
            sys.executable,
            "src/generate.py",
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
    truth = pd.read_csv(tiny / schema.TRUTH)
    assert len(truth) == len(train)
    oracle = roc_auc_score(train["target"].astype(int), truth["target_probability"])
    assert 0.75 <= oracle <= 0.85
    p = truth["target_probability"].to_numpy()
    assert np.isfinite(p).all() and (p > 0).all() and (p < 1).all()


def test_kaggle_source_without_the_cli_fails_with_a_clear_message(tmp_path):
    result = subprocess.run(
        [sys.executable, "src/generate.py", "--source", "kaggle", "--out", str(tmp_path / "d")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PATH": "/nonexistent", "HOME": "/tmp"},
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: the kaggle CLI is not installed")
    assert not (tmp_path / "d").exists()
