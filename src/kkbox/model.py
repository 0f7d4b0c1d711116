"""The two model families of the pipeline, both behind scikit-learn's estimator API."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import joblib
import numpy as np
import pandas as pd

from kkbox.io import UserError, atomic_path

if TYPE_CHECKING:
    from kkbox.params import Train

log = logging.getLogger(__name__)


def build(settings: Train) -> Any:
    """An unfitted estimator from the (checked) `train` section of params.yaml."""
    if settings.model == "xgb":
        from xgboost import XGBClassifier

        p = settings.xgb
        check_device(p.device)
        return XGBClassifier(
            n_estimators=p.n_estimators,
            learning_rate=p.learning_rate,
            max_depth=p.max_depth,
            min_child_weight=p.min_child_weight,
            subsample=p.subsample,
            colsample_bytree=p.colsample_bytree,
            max_bin=p.max_bin,
            early_stopping_rounds=p.early_stopping_rounds,
            n_jobs=p.n_jobs or None,
            device=p.device,
            tree_method="hist",
            objective="binary:logistic",
            eval_metric="auc",
            random_state=settings.seed,
        )
    from sklearn.ensemble import RandomForestClassifier

    f = settings.rf
    return RandomForestClassifier(
        n_estimators=f.n_estimators,
        max_depth=f.max_depth,
        min_samples_leaf=f.min_samples_leaf,
        max_features=f.max_features,
        max_samples=f.max_samples,
        n_jobs=f.n_jobs,
        random_state=settings.seed,
    )


def check_device(device: str) -> None:
    """Fail clearly when train.xgb.device asks for a GPU that XGBoost cannot use: XGBoost itself
    only warns and quietly trains on the CPU."""
    if device == "cpu":
        return
    where = f"params.yaml: train.xgb.device is {device!r}"
    import xgboost

    if not xgboost.build_info().get("USE_CUDA"):
        raise UserError(
            f"{where} but this XGBoost is built without CUDA (xgboost-cpu?); "
            "install the `xgboost` wheel or set train.xgb.device: cpu"
        )
    probe = xgboost.DMatrix(np.zeros((2, 1), dtype=np.float32), label=[0.0, 1.0])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            booster = xgboost.train({"device": device, "tree_method": "hist"}, probe, 1)
    except xgboost.core.XGBoostError as err:
        raise UserError(f"{where} but XGBoost cannot use it: {str(err).splitlines()[0]}") from None
    used = json.loads(booster.save_config())["learner"]["generic_param"]["device"]
    if not used.startswith("cuda"):
        raise UserError(
            f"{where} but XGBoost finds no usable GPU on this machine (it would "
            "train on the CPU instead); set train.xgb.device: cpu or run where an "
            "NVIDIA GPU and its driver are"
        )


def fit(
    model: Any, x: pd.DataFrame, y: np.ndarray, valid: tuple[pd.DataFrame, np.ndarray]
) -> dict[str, Any]:
    """Fit on (x, y); XGBoost stops early on `valid` (the early-stopping rows), the random
    forest, which does not stop early, learns from those rows too.

    A model trained on a GPU is saved set to predict on the CPU, so that it loads anywhere."""
    if type(model).__name__ != "XGBClassifier":
        model.fit(pd.concat([x, valid[0]], ignore_index=True), np.concatenate([y, valid[1]]))
        return {}
    model.fit(x, y, eval_set=[valid], verbose=False)
    device = model.get_params()["device"]
    if device != "cpu":
        model.set_params(device="cpu")
    return {
        "best_iteration": int(model.best_iteration),
        "best_valid_auc": float(model.best_score),
        "device": device,
    }


def fit_on_cluster(
    model: Any, client: Any, x: Any, y: Any, valid: tuple[Any, Any]
) -> dict[str, Any]:
    """fit() on a Dask cluster with xgboost.dask: x, y and valid are dask collections. The
    booster comes back into `model`, an ordinary XGBClassifier, as if it had trained here."""
    if type(model).__name__ != "XGBClassifier":
        raise UserError(
            "params.yaml: engine is dask, which trains XGBoost (xgboost.dask) only; set "
            "train.model: xgb or engine: local"
        )
    from xgboost import dask as dxgb

    params = model.get_params()
    device = params["device"]
    distributed = dxgb.DaskXGBClassifier(**params)
    distributed.client = client
    distributed.fit(x, y, eval_set=[valid], verbose=False)
    booster = distributed.get_booster()
    if device != "cpu":
        booster.set_param({"device": "cpu"})
    model.load_model(bytearray(booster.save_raw("ubj")))
    model.set_params(device="cpu")
    return {
        "best_iteration": int(distributed.best_iteration),
        "best_valid_auc": float(distributed.best_score),
        "device": device,
    }


def predict_proba(model: Any, x: pd.DataFrame) -> np.ndarray:
    """Probability of a replay (class 1) for each row."""
    return model.predict_proba(x)[:, 1]


def save(model: Any, path: Path) -> None:
    """Save with joblib, atomically."""
    with atomic_path(path) as tmp:
        joblib.dump(model, tmp)


def load(path: Path) -> Any:
    """Load a saved model with a clear error when it is missing, empty or corrupt."""
    if not path.exists():
        raise UserError(f"{path}: model not found; run `dvc repro train`")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: model file is empty (0 bytes); rerun `dvc repro -f train`")
    try:
        return joblib.load(path)
    except Exception as err:  # joblib/pickle raise many types for a damaged file
        raise UserError(
            f"{path}: model file is corrupt ({type(err).__name__}); rerun `dvc repro -f train`"
        ) from None


def importances(model: Any, names: list[str]) -> dict[str, float]:
    """Feature importances (gain for XGBoost, impurity for the forest), normalised to sum 1."""
    values = np.asarray(model.feature_importances_, dtype=float)
    total = values.sum() or 1.0
    return {n: float(v / total) for n, v in zip(names, values, strict=True)}
