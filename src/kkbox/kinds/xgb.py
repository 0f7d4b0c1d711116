"""Model kind `xgb`: XGBoost's hist trees, early-stopped on the valid rows, saved as UBJSON (its
own format, no pickle); on the Dask engine trained with xgboost.dask."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import Field

from cd4ml.io import UserError
from cd4ml.params import Section
from kkbox.kinds import normalised


class Settings(Section):
    """train.xgb."""

    n_estimators: Annotated[int, Field(ge=1)]
    learning_rate: Annotated[float, Field(gt=0, le=1)]
    max_depth: Annotated[int, Field(ge=1, le=64)]
    min_child_weight: Annotated[float, Field(ge=0)]
    subsample: Annotated[float, Field(gt=0, le=1)]
    colsample_bytree: Annotated[float, Field(gt=0, le=1)]
    max_bin: Annotated[int, Field(ge=2, le=65536)]
    early_stopping_rounds: Annotated[int, Field(ge=1)]
    n_jobs: Annotated[int, Field(ge=0)]  # 0 = all cores
    device: Annotated[
        str,
        Field(
            pattern=r"^(cpu|cuda(:\d+)?)$",
            json_schema_extra={"allowed": "cpu, cuda or cuda:<ordinal>"},
        ),
    ]


class XGB:
    """The kind (see cd4ml.problem.ModelKind)."""

    name = "xgb"
    file = "model.ubj"
    library = "xgboost"
    Settings = Settings

    def build(self, settings: Settings, seed: int) -> Any:
        from xgboost import XGBClassifier

        check_device(settings.device)
        return XGBClassifier(
            n_estimators=settings.n_estimators,
            learning_rate=settings.learning_rate,
            max_depth=settings.max_depth,
            min_child_weight=settings.min_child_weight,
            subsample=settings.subsample,
            colsample_bytree=settings.colsample_bytree,
            max_bin=settings.max_bin,
            early_stopping_rounds=settings.early_stopping_rounds,
            n_jobs=settings.n_jobs or None,
            device=settings.device,
            tree_method="hist",
            objective="binary:logistic",
            eval_metric="auc",
            random_state=seed,
        )

    def fit(
        self, model: Any, x: pd.DataFrame, y: np.ndarray, valid: tuple[pd.DataFrame, np.ndarray]
    ) -> dict[str, Any]:
        """Fit, stopping early on `valid`. A model trained on a GPU is saved set to predict on
        the CPU, so that it loads anywhere."""
        model.fit(x, y, eval_set=[valid], verbose=False)
        device = model.get_params()["device"]
        if device != "cpu":
            model.set_params(device="cpu")
        return {
            "best_iteration": int(model.best_iteration),
            "best_valid_auc": float(model.best_score),
            "device": device,
        }

    def fit_on_cluster(self, model: Any, client: Any, x: Any, y: Any, valid: tuple) -> dict:
        """fit() on a Dask cluster with xgboost.dask: x, y and valid are dask collections. The
        booster comes back into `model`, an ordinary XGBClassifier, as if it had trained here."""
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

    def save(self, model: Any, path: Path) -> None:
        model.save_model(path)  # the sklearn wrapper keeps best_iteration in the file

    def load(self, path: Path) -> Any:
        """The model of a UBJSON file; it must be a binary:logistic booster."""
        from xgboost import Booster, XGBClassifier

        with path.open("rb") as fh:
            if fh.read(1) != b"{":  # UBJSON and JSON models open an object; a pickle does not
                raise UserError(f"{path}: not an XGBoost model (no UBJSON or JSON object)")
        model = XGBClassifier()
        try:
            _read(model, path)
            booster = model.get_booster()
        except TypeError:  # saved by another estimator's wrapper (a regressor): say which
            booster = Booster()
            _read(booster, path)
        objective = json.loads(booster.save_config())["learner"]["objective"]
        if objective["name"] != "binary:logistic":
            raise UserError(f"{path}: an XGBoost {objective['name']} model, not binary:logistic")
        return model

    def predict(self, model: Any, x: pd.DataFrame) -> np.ndarray:
        # As a float32 matrix: the numbers XGBoost makes of the DataFrame, without its per-call
        # DataFrame checks (a 1-row request: 0.2 ms instead of 1.6 ms).
        return model.predict_proba(x.to_numpy(dtype=np.float32))[:, 1]

    def importances(self, model: Any, names: list[str]) -> dict[str, float]:
        """Gain importances, normalised to sum 1."""
        return normalised(model.feature_importances_, names)


def _read(model: Any, path: Path) -> None:
    """load_model, with XGBoost's errors about the file as one line naming it."""
    from xgboost.core import XGBoostError

    try:
        model.load_model(path)
    except (XGBoostError, UnicodeDecodeError) as err:
        # XGBoost's message quotes the bytes it choked on, which may not even decode.
        text = str(err).strip() if isinstance(err, XGBoostError) else ""
        first = text.splitlines()[0] if text else "unreadable"
        raise UserError(f"{path}: not an XGBoost model ({first[:160]})") from None


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


KIND = XGB()
