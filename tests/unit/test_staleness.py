"""tools.staleness: the windows after the cut, their table and slopes (pure), one clear line for
bad input, and the tool on tiny synthetic data (slow)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cd4ml import params
from cd4ml.io import UserError
from kkbox import synth
from tests.project import ROOT, project_env
from tools import staleness


def test_windows_cover_the_rows_after_the_cut_in_order():
    assert staleness.windows_of(10, 3) == [(0, 3), (3, 7), (7, 10)]
    assert staleness.windows_of(5, 5) == [(i, i + 1) for i in range(5)]
    with pytest.raises(UserError, match="4 rows after the cut cannot make 5 windows"):
        staleness.windows_of(4, 5)


def test_the_table_has_one_row_per_window_with_its_age_and_aucs():
    y = np.tile([0, 1], 10)
    p = np.r_[y[:10] * 0.8 + 0.1, 1 - y[10:]]  # right in the first window, inverted after
    table = staleness.curve(y, p, y * 0.6 + 0.2, cut=80, n_examples=100, windows=2)
    assert [r["window"] for r in table] == [1, 2]
    assert [(r["first_row"], r["last_row"], r["rows"]) for r in table] == [
        (80, 89, 10),
        (90, 99, 10),
    ]
    assert [r["age"] for r in table] == [0.045, 0.145]  # middle rows 4.5 and 14.5 of 100
    assert [r["roc_auc"] for r in table] == [1.0, 0.0]
    assert [r["oracle_roc_auc"] for r in table] == [1.0, 1.0]
    assert [r["gap_to_oracle"] for r in table] == [0.0, 1.0]
    assert table[0]["positive_rate"] == 0.5


def test_without_truth_or_a_class_a_window_has_no_auc():
    y = np.r_[np.zeros(5), np.tile([0, 1], 5)]
    table = staleness.curve(y, np.linspace(0, 1, 15), np.full(15, np.nan), 0, 15, 3)
    assert table[0]["roc_auc"] is None  # one class only
    assert all(r["oracle_roc_auc"] is None and r["gap_to_oracle"] is None for r in table)
    assert table[1]["roc_auc"] is not None


def test_the_slope_is_the_change_per_tenth_of_age():
    table = [{"age": a, "roc_auc": 0.8 - a * 0.5} for a in (0.1, 0.2, 0.3)]
    assert staleness.slope(table) == pytest.approx(-0.05)
    assert staleness.slope(table[:1]) is None
    assert staleness.slope([{"age": 0.1, "roc_auc": None}, *table[:1]]) is None


def test_the_split_starts_the_eval_part_at_the_cut():
    settings = staleness.split_settings(ROOT / "params.yaml", 0.3)
    assert settings.eval_fraction == pytest.approx(0.7)
    assert (
        settings.valid_fraction
        == params.section(ROOT / "params.yaml", "split", type(settings)).valid_fraction
    )


@pytest.mark.parametrize(
    ("cut", "windows", "message"),
    [(0.0, 5, "--cut 0.0"), (1.5, 5, "--cut 1.5"), (0.5, 0, "--windows 0")],
)
def test_a_cut_or_window_count_out_of_range_is_refused(cut, windows, message):
    with pytest.raises(UserError, match=message):
        staleness.check_args(cut, windows)


def test_the_markdown_shows_every_window_and_the_slopes():
    table = staleness.curve(
        np.tile([0, 1], 10), np.tile([0.2, 0.7], 10), np.full(20, np.nan), 80, 100, 2
    )
    report = {
        "train_rows": 80,
        "examples": 100,
        "cut": 0.8,
        "valid_rows": 8,
        "model": "xgb",
        "windows": 2,
        "table": table,
        "slope": 0.0,
        "gap_slope": None,
    }
    text = staleness.markdown(report)
    assert "| 1 | 80-89 | 0.045 | 0.5000 | 1.0000 |  |  |" in text
    assert "| 2 | 90-99 | 0.145 |" in text
    assert "per 0.1 of age (least squares): +0.0000; gap to the oracle: ." in text


def test_a_missing_data_folder_is_one_line(tmp_path: Path):
    result = subprocess.run(
        [sys.executable, "-m", "tools.staleness", "--data", str(tmp_path / "nowhere")],
        cwd=ROOT,
        env=project_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {tmp_path / 'nowhere'}: no such data folder; make one with "
        "`make data SCALE=small`"
    )
    assert not (tmp_path / "reports").exists()


@pytest.mark.slow
def test_on_tiny_data_the_model_goes_stale(tmp_path: Path):
    settings = params.section(ROOT / "params.yaml", "generate", synth.Generate)
    synth.write(
        tmp_path / "data", "tiny", settings.seed, settings.positive_rate, **settings.time_effects()
    )
    out = tmp_path / "staleness"
    staleness.main(["--data", str(tmp_path / "data"), "--out", str(out), "--windows", "5"])
    report = json.loads((out / "staleness.json").read_text())
    table = report["table"]
    assert report["examples"] == 30_000 and report["train_rows"] == 15_000
    assert [r["first_row"] for r in table] == [15_000, 18_000, 21_000, 24_000, 27_000]
    assert all(0.5 < r["roc_auc"] < r["oracle_roc_auc"] for r in table)
    # The generator's time effects (new members and songs, trends, the source mix): the later
    # windows are scored worse than the first one.
    assert table[-1]["roc_auc"] < table[0]["roc_auc"] - 0.01
    assert report["slope"] < 0
    with (out / "staleness.csv").open(encoding="utf-8") as f:
        assert [int(r["window"]) for r in csv.DictReader(f)] == [1, 2, 3, 4, 5]
    assert (out / "staleness.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| 5 | 27,000-29,999 | 0.450 |" in (out / "staleness.md").read_text()
