"""cd4ml.engine: the environment chooses where preprocess and train run; a problem's fit writes
through FeatureOutput into a folder swapped in whole; on the local engine the model kind fits
the train features and stops early on the valid ones. (The Dask side runs against a real
cluster in tests/e2e/test_dask_engine.py.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from cd4ml import engine, model
from cd4ml.io import UserError, parquet_folder, run_main
from cd4ml.split import PARTS
from tests.kinds import frame, small
from tests.project import ROOT
from tests.toy import PROBLEM as TOY


@pytest.mark.parametrize(
    ("env", "chosen"),
    [
        ({}, "local"),
        ({"DASK_SCHEDULER_ADDRESS": "tcp://127.0.0.1:8786"}, "dask"),
        ({"DASK_SCHEDULER_ADDRESS": "tcp://127.0.0.1:8786", "CD4ML_ENGINE": "local"}, "local"),
        ({"CD4ML_ENGINE": "dask"}, "dask"),
    ],
)
def test_the_environment_chooses_the_engine(monkeypatch, env, chosen):
    for name in ("CD4ML_ENGINE", "DASK_SCHEDULER_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert engine.name() == chosen


def test_an_unknown_engine_is_one_line(monkeypatch):
    monkeypatch.setenv("CD4ML_ENGINE", "spark")
    with pytest.raises(UserError, match="CD4ML_ENGINE='spark': use local or dask"):
        engine.name()


def test_feature_output_writes_each_part_with_the_target_last(tmp_path):
    x = pd.DataFrame({"a": np.arange(4, dtype=np.float32), "b": np.ones(4, dtype=np.int16)})
    with parquet_folder(tmp_path / "features") as folder:
        out = engine.FeatureOutput(folder)
        assert out.featurizer == folder.path / "featurizer"
        out.features("train", x, np.array([0, 1, 0, 1], dtype=np.int8))
    table = pq.read_table(tmp_path / "features" / "train.parquet")
    assert table.column_names == ["a", "b", model.TARGET]
    read_x, read_y = model.read_features(tmp_path / "features" / "train.parquet")
    pd.testing.assert_frame_equal(read_x, x)
    assert read_y.tolist() == [0, 1, 0, 1]


def _split(tmp_path: Path) -> Path:
    """The toy problem's split parts, as the split stage writes them."""
    from cd4ml.reading import read_table
    from cd4ml.split import Split, split
    from tests.toy import churn

    data = tmp_path / "data"
    churn.write(data, 3_000, churn.Generate(seed=3, churn_drift=0.0))
    examples = read_table(data / "customers.csv", TOY.contract.tables["customers.csv"])
    truth = read_table(data / "customers_truth.csv", TOY.contract.tables["customers_truth.csv"])
    parts = split(examples, truth.column(0), Split(eval_fraction=0.2, valid_fraction=0.1))
    folder = tmp_path / "split"
    folder.mkdir()
    for name, table in parts.items():
        pq.write_table(table, folder / f"{name}.parquet")
    return folder


def test_featurize_runs_the_problems_fit_and_swaps_the_folder_in_whole(tmp_path, monkeypatch):
    monkeypatch.delenv("CD4ML_ENGINE", raising=False)
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    split = _split(tmp_path)
    settings = TOY.sections["preprocess"](min_category_count=5)
    out = tmp_path / "features"
    engine.featurize(TOY, tmp_path / "data", split, settings, out)
    assert sorted(p.name for p in out.iterdir()) == [
        "eval.parquet",
        "featurizer",
        "train.parquet",
        "valid.parquet",
    ]
    rows = {part: pq.read_metadata(out / f"{part}.parquet").num_rows for part in PARTS}
    assert rows == {"train": 2160, "valid": 240, "eval": 600}
    before = {p.name: p.read_bytes() for p in out.glob("*.parquet")}

    class Broken(type(TOY)):
        def fit(self, data, parts, settings, out):
            out.features("train", pd.DataFrame({"a": [1.0]}), np.array([1]))
            raise UserError("the fit failed half-way")

    with pytest.raises(UserError, match="half-way"):
        engine.featurize(Broken(), tmp_path / "data", split, settings, out)
    assert {p.name: p.read_bytes() for p in out.glob("*.parquet")} == before


def test_the_dask_engine_needs_a_plan(tmp_path, monkeypatch):
    monkeypatch.setenv("CD4ML_ENGINE", "dask")
    with pytest.raises(UserError, match="toy-churn has no plan for it"):
        engine.featurize(TOY, tmp_path, tmp_path, None, tmp_path / "features")
    assert not (tmp_path / "features").exists()


def test_fit_trains_the_kind_on_train_and_stops_early_on_valid(tmp_path, monkeypatch):
    monkeypatch.delenv("CD4ML_ENGINE", raising=False)
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    split = _split(tmp_path)
    settings = TOY.sections["preprocess"](min_category_count=5)
    engine.featurize(TOY, tmp_path / "data", split, settings, tmp_path / "features")
    train = model.train_settings(TOY.kinds).model_validate(
        {
            "model": "xgb",
            "seed": 1,
            "xgb": {
                "n_estimators": 50,
                "learning_rate": 0.3,
                "max_depth": 3,
                "min_child_weight": 1,
                "subsample": 1.0,
                "colsample_bytree": 1.0,
                "max_bin": 64,
                "early_stopping_rounds": 5,
                "n_jobs": 1,
                "device": "cpu",
            },
            "rf": {
                "n_estimators": 5,
                "max_depth": 3,
                "min_samples_leaf": 5,
                "max_features": 0.5,
                "max_samples": 0.5,
                "n_jobs": 1,
            },
            "logreg": {"C": 1.0, "max_iter": 100},
        }
    )
    built = model.build(TOY.kinds, train)
    info, n_train, n_valid = engine.fit(TOY, built, tmp_path / "features")
    assert (n_train, n_valid) == (2160, 240)
    assert 0 <= info["best_iteration"] < 50 and 0.5 < info["best_valid_auc"] <= 1


def test_a_kind_without_a_cluster_fit_is_refused_on_dask(tmp_path, monkeypatch):
    monkeypatch.setenv("CD4ML_ENGINE", "dask")
    kind = TOY.kinds["logreg"]
    built = model.Model(kind, kind.build(kind.Settings(C=1.0, max_iter=10), 0))
    with pytest.raises(UserError, match="model kind logreg has no fit_on_cluster"):
        engine.fit(TOY, built, tmp_path)


def _features(folder: Path, broken: tuple[str, int, str, float] | None = None) -> Path:
    """train.parquet and valid.parquet of tests/kinds.py's frame (its feature c is NaN in
    part); `broken`: (part, row, feature, value) written into one cell."""
    x, y = frame(600)
    parts = {"train": (x[:500].reset_index(drop=True), y[:500]), "valid": (x[500:], y[500:])}
    if broken is not None:
        part, row, feature, value = broken
        parts[part][0].loc[parts[part][0].index[row], feature] = value
    folder.mkdir(parents=True, exist_ok=True)
    for part, (xs, ys) in parts.items():
        pq.write_table(engine.FeatureOutput.table(xs, ys), folder / f"{part}.parquet")
    return folder


def _quick_xgb() -> model.Model:
    kind = TOY.kinds["xgb"]
    return model.Model(kind, kind.build(small(kind), 0))


def test_nan_features_are_missing_values_the_fit_takes(tmp_path, monkeypatch):
    monkeypatch.delenv("CD4ML_ENGINE", raising=False)
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    folder = _features(tmp_path / "features", ("valid", 3, "a", np.nan))
    info, n_train, n_valid = engine.fit(TOY, _quick_xgb(), folder)
    assert (n_train, n_valid) == (500, 100) and 0.5 < info["best_valid_auc"] <= 1


@pytest.mark.parametrize(("part", "row", "value"), [("train", 7, np.inf), ("valid", 42, -np.inf)])
def test_an_infinite_feature_is_refused_before_the_fit_naming_file_row_and_feature(
    tmp_path, monkeypatch, part, row, value
):
    monkeypatch.delenv("CD4ML_ENGINE", raising=False)
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    folder = _features(tmp_path / "features", (part, row, "b", value))
    built = _quick_xgb()
    with pytest.raises(UserError) as err:
        engine.fit(TOY, built, folder)
    assert str(err.value).startswith(
        f"{folder / f'{part}.parquet'}: rows[{row}]: feature b is {value:g} (NaN is a missing "
        "value, infinity is not): "
    )
    assert "dvc repro preprocess" in str(err.value) and "\n" not in str(err.value)


def test_the_train_stage_refuses_an_infinite_feature_in_one_line(tmp_path, monkeypatch, capsys):
    import train

    monkeypatch.delenv("CD4ML_ENGINE", raising=False)
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    folder = _features(tmp_path / "features", ("train", 3, "c", np.inf))
    argv = ["--features", str(folder), "--out", str(tmp_path / "model")]
    with pytest.raises(SystemExit) as exit_code:
        run_main(train.main, [*argv, "--params", str(ROOT / "params.yaml")])
    assert exit_code.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {folder / 'train.parquet'}: rows[3]: feature c is inf ")
    assert len(err.splitlines()) == 1 and not (tmp_path / "model").exists()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_on_dask_an_infinite_feature_is_refused_naming_the_row_of_the_file(tmp_path, monkeypatch):
    # A local Dask cluster (no scheduler address): the check runs on each partition of the
    # workers' frames, its row counted from the start of the file, not of the partition.
    monkeypatch.setenv("CD4ML_ENGINE", "dask")
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    folder = _features(tmp_path / "features", ("valid", 42, "b", -np.inf))
    with pytest.raises(UserError) as err:
        engine.fit(TOY, _quick_xgb(), folder)
    assert str(err.value).startswith(
        f"{folder / 'valid.parquet'}: rows[42]: feature b is -inf (NaN is a missing value, "
    )
