"""KKBox with two faulty model kinds, for the rollout's tests (tests/e2e/test_rollout.py): a
bundle of kind `constant` scores every row 0.5, one of kind `slow` answers a second late. Both
read the xgb kind's file: a test writes an xgb bundle and names the kind in its manifest."""

from __future__ import annotations

import time
from collections.abc import Mapping
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from cd4ml.problem import ModelKind, discover_kinds
from kkbox import KKBox
from kkbox.kinds.xgb import XGB


class Constant(XGB):
    name = "constant"

    def predict(self, model: Any, x: pd.DataFrame) -> np.ndarray:
        return np.full(len(x), 0.5, dtype=np.float32)


class Slow(XGB):
    name = "slow"

    def predict(self, model: Any, x: pd.DataFrame) -> np.ndarray:
        time.sleep(1.0)
        return super().predict(model, x)


class Faulty(KKBox):
    @cached_property
    def kinds(self) -> Mapping[str, ModelKind]:
        return {**discover_kinds("kkbox.kinds"), "constant": Constant(), "slow": Slow()}


PROBLEM = Faulty()
