"""cd4ml.generate: `make data` through the problem: its scales, its params checks, its sources."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cd4ml import generate
from kkbox import PROBLEM
from kkbox.tables import CONTRACT
from tests.project import ROOT, write_params


def _generate(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cd4ml.generate", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
    )


@pytest.mark.parametrize("rate", [0, 1.0, -0.2, "half"])
def test_a_positive_rate_out_of_range_fails_with_a_clear_message(tmp_path, rate):
    params = tmp_path / "params.yaml"
    write_params(params, seed=7, positive_rate=rate)
    out = tmp_path / "d"
    result = _generate("--params", str(params), "--out", str(out))
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: {params}: generate.positive_rate must be ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_an_unknown_problem_fails_before_anything_is_written(tmp_path):
    params = tmp_path / "params.yaml"
    data = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    params.write_text(yaml.safe_dump({**data, "problem": "no_such_problem"}), encoding="utf-8")
    result = _generate("--params", str(params), "--out", str(tmp_path / "d"))
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: {params}: problem 'no_such_problem' cannot be ")
    assert not (tmp_path / "d").exists()


def test_the_tiny_scale_writes_every_table_of_the_contract(tmp_path):
    params = tmp_path / "params.yaml"
    write_params(params, seed=7)
    out = tmp_path / "d"
    result = _generate("--scale", "tiny", "--params", str(params), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(CONTRACT.tables)
    header = (out / CONTRACT.examples).read_text(encoding="utf-8").splitlines()[0]
    assert header.split(",") == list(CONTRACT.tables[CONTRACT.examples].columns)


def test_download_without_the_kaggle_cli_fails_with_a_clear_message(tmp_path):
    out = tmp_path / "d"
    result = _generate("--source", "download", "--out", str(out), env={"PATH": "/nonexistent"})
    assert result.returncode == 1
    assert result.stderr.startswith("error: the kaggle CLI is not installed")
    assert not out.exists()


def test_the_defaults_are_small_synthetic_data_in_data():
    args = generate.parse_args([], PROBLEM.scales)
    assert (args.source, args.scale, args.params, args.out) == (
        "synthetic",
        "small",
        "params.yaml",
        Path("data"),
    )
    assert generate.parse_args(["--scale", "full"], PROBLEM.scales).scale == "full"
    with pytest.raises(SystemExit):
        generate.parse_args(["--scale", "huge"], PROBLEM.scales)
    with pytest.raises(SystemExit):
        generate.parse_args(["--source", "kaggle"], PROBLEM.scales)
