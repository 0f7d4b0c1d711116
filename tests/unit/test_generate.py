"""cd4ml.generate: the command line, its params checks and the atomic write of data/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cd4ml import generate, synth
from cd4ml.io import UserError
from tests.project import ROOT, write_params


@pytest.mark.parametrize("rate", [0, 1.0, -0.2, "half"])
def test_a_positive_rate_out_of_range_fails_with_a_clear_message(tmp_path, rate):
    params = tmp_path / "params.yaml"
    write_params(params, seed=7, positive_rate=rate)
    out = tmp_path / "d"
    result = subprocess.run(
        [sys.executable, "-m", "cd4ml.generate", "--params", str(params), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: params.yaml: generate.positive_rate must be ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_kaggle_source_without_the_cli_fails_with_a_clear_message(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cd4ml.generate",
            "--source",
            "kaggle",
            "--out",
            str(tmp_path / "d"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PATH": "/nonexistent", "HOME": "/tmp"},
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: the kaggle CLI is not installed")
    assert not (tmp_path / "d").exists()


def test_the_defaults_are_small_synthetic_data_in_data():
    args = generate.parse_args([])
    assert (args.source, args.scale, args.params, args.out) == (
        "synthetic",
        "small",
        "params.yaml",
        Path("data"),
    )
    with pytest.raises(SystemExit):
        generate.parse_args(["--scale", "huge"])


def _two_tables(scale: synth.Scale, seed: int, positive_rate: float) -> dict:
    return {
        "a.csv": {"x": np.array([seed, 2]), "p": np.array([positive_rate, 0.25])},
        "b.csv": {"y": np.array([scale.train])},
    }


def test_write_synthetic_writes_every_table_of_the_scale_and_seed(tmp_path, monkeypatch):
    monkeypatch.setattr(synth, "generate", _two_tables)
    out = tmp_path / "data"
    generate.write_synthetic(out, "tiny", seed=7, positive_rate=0.75)
    assert sorted(p.name for p in out.iterdir()) == ["a.csv", "b.csv"]
    assert (out / "a.csv").read_text() == "x,p\n7,0.75\n2,0.25\n"
    assert (out / "b.csv").read_text() == f"y\n{synth.SCALES['tiny'].train}\n"


def test_a_failed_write_leaves_the_previous_data(tmp_path, monkeypatch):
    out = tmp_path / "data"
    out.mkdir()
    (out / "old.csv").write_text("kept\n")
    written = []

    def disk_full_on_the_second_table(columns: dict, path: Path) -> int:
        if written:
            raise OSError(28, "No space left on device")
        written.append(path.name)
        path.write_text("x\n1\n")
        return 1

    monkeypatch.setattr(synth, "generate", _two_tables)
    monkeypatch.setattr(generate, "write_csv", disk_full_on_the_second_table)
    with pytest.raises(OSError, match="No space left"):
        generate.write_synthetic(out, "tiny", seed=1)
    assert written == ["a.csv"]
    assert [p.name for p in tmp_path.iterdir()] == ["data"]  # no temp folder left
    assert [p.name for p in out.iterdir()] == ["old.csv"]


def test_kaggle_without_credentials_names_both_ways_to_give_them(tmp_path, monkeypatch):
    monkeypatch.setattr(generate.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    monkeypatch.delenv("KAGGLE_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(UserError, match=r"^no Kaggle credentials: set KAGGLE_USERNAME and"):
        generate.download_kaggle(tmp_path / "d")
    assert not (tmp_path / "d").exists()
