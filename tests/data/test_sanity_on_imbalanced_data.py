"""Data tests of the model sanity checks: on generated data at 25, 50 and 75 % positives, a good
model passes them all and a broken one fails.

The checks the stage runs (cd4ml.checks), on a real (small) model of generated data at three
base rates. Built as the stages build it: CSV written and read with its contract, split by time
(cd4ml.split), features fitted on the train part (kkbox.fit, through the engine's
FeatureOutput), the model kind's fit stopping early on the valid part; only the model is smaller
than params.yaml's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from cd4ml import checks as S
from cd4ml import metrics, model, params, split
from cd4ml.engine import FeatureOutput
from cd4ml.io import REPEATED_IDS_PARQUET, parquet_folder, write_csv, write_parquet
from cd4ml.model import read_features
from cd4ml.reading import read_table
from kkbox import PROBLEM, fit, synth
from kkbox.tables import CONTRACT
from tests.project import ROOT

PARAMS = ROOT / "params.yaml"
KINDS = PROBLEM.kinds


def _settings() -> dict[str, Any]:
    """params.yaml's sections the stages read, with a smaller XGBoost: the tiny data stops
    early by ~40 trees anyway."""
    train = params.section(PARAMS, "train", model.train_settings(KINDS))
    small = train.xgb.model_copy(update={"n_estimators": 60, "n_jobs": 2})
    return {
        "generate": params.section(PARAMS, "generate", synth.Generate),
        "split": params.section(PARAMS, "split", split.Split),
        "preprocess": params.section(PARAMS, "preprocess", fit.Preprocess),
        "train": train.model_copy(update={"model": "xgb", "xgb": small}),
        "evaluate": params.section(PARAMS, "evaluate", metrics.Evaluate),
        "sanity": params.section(PARAMS, "sanity", S.Sanity),
    }


def _features(data: Path, settings: dict[str, Any], out: Path) -> None:
    """Stages split and preprocess: the parts by time, then every part's features."""
    name = CONTRACT.examples
    examples = read_table(data / name, CONTRACT.tables[name])
    truth = pa.chunked_array([pa.nulls(examples.num_rows, pa.float64())])
    parts = {}
    for part, table in split.split(examples, truth, settings["split"]).items():
        parts[part] = out / "split" / f"{part}.parquet"
        write_parquet(table, parts[part], "zstd", **REPEATED_IDS_PARQUET)
    with parquet_folder(out / "features") as folder:
        fit.fit(
            data, {p: parts[p] for p in split.PARTS}, settings["preprocess"], FeatureOutput(folder)
        )


def _checks(settings: dict[str, Any], p: np.ndarray, y: np.ndarray) -> list[S.Check]:
    """The checks of the stage's eval predictions, with params.yaml's thresholds."""
    sanity = settings["sanity"]
    return S.prediction_checks(
        p,
        y,
        len(y),
        sanity.calibration_tolerance,
        sanity.min_roc_auc,
        settings["evaluate"].threshold,
    )


@pytest.fixture(scope="module", params=[0.25, 0.5, 0.75], ids=lambda r: f"{r:.0%}")
def at_rate(request, tmp_path_factory) -> dict:
    """Data at one base rate: a good model's eval predictions, its training rows, the settings."""
    settings = _settings()
    root = tmp_path_factory.mktemp("rate")
    data = root / "data"
    data.mkdir()
    tables = synth.generate(
        synth.SCALES["tiny"], settings["generate"].seed, positive_rate=request.param
    )
    for name in (*CONTRACT.required, CONTRACT.truth):
        write_csv(tables[name], data / name)
    _features(data, settings, root)
    folder = root / "features"
    x, y = read_features(folder / "train.parquet")
    valid = read_features(folder / "valid.parquet")
    fitted = model.build(KINDS, settings["train"])
    fitted.kind.fit(fitted.estimator, x, y, valid)
    x_eval, y_eval = read_features(folder / "eval.parquet")
    return {
        "rate": request.param,
        "settings": settings,
        "x": x,
        "y_train": y,
        "y": y_eval,
        "p": fitted.predict(x_eval),
    }


def test_a_good_model_passes_every_check_whatever_the_base_rate(at_rate):
    settings, y, p = at_rate["settings"], at_rate["y"], at_rate["p"]
    assert abs(at_rate["y_train"].mean() - at_rate["rate"]) < 0.02
    stable = S.cv_check(
        at_rate["x"],
        at_rate["y_train"],
        KINDS,
        settings["train"],
        settings["sanity"],
        settings["split"].valid_fraction,
    )
    assert stable.details["folds"] == settings["sanity"].cv_folds
    checks = [*_checks(settings, p, y), stable]
    assert S.failure_message(checks) is None
    calibration = checks[3].details
    # What the old gate held against training's rate: far off at 25 and 75 %, and harmless.
    if at_rate["rate"] != 0.5:
        share = calibration["predicted_positive_rate"]
        assert abs(share - calibration["observed_positive_rate"]) > 0.05


@pytest.mark.parametrize(
    "broken, fails",
    [
        ("constant", {"not_constant", "roc_auc"}),
        ("shuffled", {"roc_auc"}),
        ("inverted", {"roc_auc"}),
    ],
)
def test_a_broken_model_fails_a_check_whatever_the_base_rate(at_rate, broken, fails):
    p, y = at_rate["p"], at_rate["y"]
    wrong = {
        # Calibrated on average, but says nothing about any row.
        "constant": np.full(len(p), at_rate["y_train"].mean()),
        "shuffled": np.random.default_rng(0).permutation(p),
        "inverted": 1.0 - p,
    }[broken]
    checks = _checks(at_rate["settings"], wrong, y)
    failed = {c.name for c in checks if not c.passed}
    assert fails <= failed
    if broken == "inverted" and at_rate["rate"] != 0.5:
        assert "calibration" in failed  # its mean is 1 - the rate
