"""tools.retrain: the examples read with their truth, clear lines for a missing or mismatched
data folder, a fit on features in memory and the bytes of what it makes."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cd4ml import params
from cd4ml.io import UserError
from kkbox import PROBLEM, synth, tables
from tests.project import ROOT
from tools import retrain

TINY = synth.Scale(members=60, songs=1000, train=500, test=100)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("retrain") / "data"
    folder.mkdir()
    for name, columns in synth.generate(TINY, seed=1).items():
        synth.write_csv(columns, folder / name)
    return folder


def test_the_examples_come_with_their_truth(data: Path):
    examples, truth = retrain.read_examples(data, PROBLEM)
    assert examples.num_rows == len(truth) == TINY.train
    assert examples.column_names[-1] == tables.CONTRACT.target
    assert truth.null_count == 0


def test_without_a_truth_file_the_truth_is_null(data: Path, tmp_path: Path):
    shutil.copytree(data, tmp_path / "data")
    (tmp_path / "data" / tables.TRUTH).unlink()
    _, truth = retrain.read_examples(tmp_path / "data", PROBLEM)
    assert truth.null_count == TINY.train


def test_a_truth_file_of_other_rows_is_refused(data: Path, tmp_path: Path):
    shutil.copytree(data, tmp_path / "data")
    truth = tmp_path / "data" / tables.TRUTH
    truth.write_text("\n".join(truth.read_text().splitlines()[:-3]) + "\n")
    with pytest.raises(UserError, match=r"train_truth\.csv: 497 rows for the 500 of .*train\.csv"):
        retrain.read_examples(tmp_path / "data", PROBLEM)


def test_a_missing_folder_or_table_is_one_line(tmp_path: Path):
    with pytest.raises(UserError, match=r"nowhere: no such data folder; make one with"):
        retrain.read_examples(tmp_path / "nowhere", PROBLEM)
    with pytest.raises(UserError, match=r"train\.csv not found: .* holds no kkbox-recommender"):
        retrain.read_examples(tmp_path, PROBLEM)


def test_a_fit_in_memory_gives_a_model_and_its_bytes(tmp_path: Path):
    rng = np.random.default_rng(0)
    x = pd.DataFrame({"a": rng.normal(size=400), "b": rng.normal(size=400)})
    y = (x["a"] + rng.normal(scale=0.5, size=400) > 0).astype(int).to_numpy()
    settings = retrain.train_settings(PROBLEM, ROOT / "params.yaml")
    fitted, info, seconds = retrain.fit_frames(
        PROBLEM, settings, (x[:300], y[:300]), (x[300:], y[300:])
    )
    assert fitted.kind.name == params.section(ROOT / "params.yaml", "train", type(settings)).model
    assert seconds > 0 and isinstance(info, dict)
    assert retrain.auc_or_none(y[300:], fitted.predict(x[300:])) > 0.8
    assert retrain.model_bytes(fitted, tmp_path) > 0
    assert list(tmp_path.iterdir()) == []  # the model's file is measured, then removed


def test_bytes_of_a_folder_and_an_auc_without_a_class(tmp_path: Path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f").write_bytes(b"123")
    (tmp_path / "g").write_bytes(b"45")
    assert retrain.folder_bytes(tmp_path) == 5
    assert retrain.auc_or_none(np.zeros(4), np.arange(4.0)) is None
    assert retrain.auc_or_none(np.array([0, 1, 0, 1]), np.arange(4.0)) == 0.75
