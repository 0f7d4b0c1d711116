"""tools.oraclegap: the model retrained with the generator's hidden parts, on tiny data that the
real split and preprocess stages featurise."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cd4ml import params
from cd4ml.io import UserError
from kkbox import synth
from tests.project import ROOT, project_env, write_params
from tools import oraclegap

TINY = synth.Scale(members=60, songs=1000, train=500, test=100)


def test_the_parts_are_those_of_the_truth_file():
    truth = synth.generate(TINY, seed=1)["train_truth.csv"]["target_probability"]
    parts = synth.logit_parts(TINY, seed=1)
    assert set(parts) == {*oraclegap.CASES["+ every hidden part"]}
    assert all(len(v) == TINY.train for v in parts.values())
    logit = np.log(truth.clip(1e-6) / (1 - truth).clip(1e-6))
    assert np.corrcoef(logit, sum(parts.values()))[0, 1] > 0.9999
    other = synth.logit_parts(TINY, seed=2)
    assert np.corrcoef(logit, sum(other.values()))[0, 1] < 0.9


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny synthetic data, split and featurised by the stages' own scripts."""
    root = tmp_path_factory.mktemp("oraclegap")
    settings = params.section(ROOT / "params.yaml", "generate", synth.Generate)
    synth.write(
        root / "data", "tiny", settings.seed, settings.positive_rate, **settings.time_effects()
    )
    for cmd in (
        ["src/split.py", "--data", root / "data", "--out", root / "split"],
        ["src/preprocess.py", "--data", root / "data", "--split", root / "split"],
    ):
        out = ["--out", root / "features"] if "preprocess" in cmd[0] else []
        env = project_env(CD4ML_ENGINE="local")
        subprocess.run([sys.executable, *map(str, cmd + out)], cwd=ROOT, env=env, check=True)
    return root


def test_every_hidden_part_brings_the_model_to_the_oracle(pipeline: Path):
    args = ["--data", pipeline / "data", "--features", pipeline / "features"]
    oraclegap.main([*map(str, args), "--out", str(pipeline / "report")])
    report = json.loads((pipeline / "report" / "oracle-gap-tiny.json").read_text())
    assert report["scale"] == "tiny" and report["eval_rows"] == 6000
    assert report["model"] == "xgb"  # the xgb kind, stopped early on the valid features
    assert all(isinstance(case["trees"], int) for case in report["cases"])
    auc = {case["case"]: case["roc_auc"] for case in report["cases"]}
    assert list(auc) == list(oraclegap.CASES)
    oracle = report["oracle_roc_auc"]
    assert auc["the pipeline's features"] < oracle - 0.01
    # Misaligned parts would add nothing; aligned ones take the model most of the way (its
    # early stopping on 2,400 rows leaves it short of the oracle's exact sum).
    assert auc["+ every hidden part"] > auc["the pipeline's features"] + 0.03
    assert auc["+ every hidden part"] > oracle - 0.025
    assert "| + every hidden part |" in (pipeline / "report" / "oracle-gap-tiny.md").read_text()


def test_another_draw_is_refused(pipeline: Path, tmp_path: Path):
    write_params(tmp_path / "params.yaml", seed=1)
    args = ["--data", pipeline / "data", "--features", pipeline / "features"]
    with pytest.raises(UserError, match=r"train_truth\.csv is not what .* \(seed 1\) draws"):
        oraclegap.main([*map(str, args), "--params", str(tmp_path / "params.yaml")])


def test_features_of_other_rows_are_refused(pipeline: Path):
    target = np.zeros(synth.SCALES["tiny"].train, dtype=np.int64)
    with pytest.raises(UserError, match=r"does not hold train\.csv's rows in order"):
        oraclegap.read_features(pipeline / "features", target)


def test_data_of_no_synthetic_scale_is_refused():
    with pytest.raises(UserError, match=r"train\.csv has 1,234 rows, no synthetic scale's"):
        oraclegap.scale_of(1234)


def test_data_without_a_truth_file_is_refused(tmp_path: Path):
    with pytest.raises(UserError, match=r"train_truth\.csv not found: the oracle gap needs"):
        oraclegap.main(["--data", str(tmp_path), "--out", str(tmp_path / "report")])
