"""KKBox with faulty model kinds, for the rollout's tests (tests/e2e/test_rollout.py) and the
gate's (tests/unit/test_gate_slices_cost.py): a bundle of kind `constant` scores every row 0.5,
one of kind `slow` answers `Slow.delay` seconds late (a second), one of kind
`new_member_inverted` scores new members (no play in training) upside down, one of kind
`known_noisy` adds noise to the scores of known members, one of kind `nan` scores the first
row of a batch as xgb and every other NaN (the one-row warm-up passes: the numerical health
tests, tests/unit/test_serve.py). All read the xgb kind's file: a test writes an xgb bundle and
names the kind in its manifest."""

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
    delay = 1.0  # seconds

    def predict(self, model: Any, x: pd.DataFrame) -> np.ndarray:
        time.sleep(self.delay)
        return super().predict(model, x)


class NewMemberInverted(XGB):
    """Better elsewhere, wrong for listeners it never saw: their scores are 1 - p."""

    name = "new_member_inverted"

    def predict(self, model: Any, x: pd.DataFrame) -> np.ndarray:
        p = super().predict(model, x)
        return np.where(np.asarray(x["member_plays"]) > 0, p, 1 - p).astype(p.dtype)


class KnownNoisy(XGB):
    """An older model's stand-in: noisy scores for known members, the same for new ones."""

    name = "known_noisy"

    def predict(self, model: Any, x: pd.DataFrame) -> np.ndarray:
        p = super().predict(model, x).astype(np.float64)
        logit = np.log(p / (1 - p)) + np.random.default_rng(0).normal(0, 2.0, len(p))
        noisy = 1 / (1 + np.exp(-logit))
        return np.where(np.asarray(x["member_plays"]) > 0, noisy, p).astype(np.float32)


class Nan(XGB):
    """A model that breaks: NaN for every row of a batch but the first."""

    name = "nan"

    def predict(self, model: Any, x: pd.DataFrame) -> np.ndarray:
        p = super().predict(model, x)
        p[1:] = np.nan
        return p


class Faulty(KKBox):
    @cached_property
    def kinds(self) -> Mapping[str, ModelKind]:
        faulty = (Constant(), Slow(), NewMemberInverted(), KnownNoisy(), Nan())
        return {**discover_kinds("kkbox.kinds"), **{kind.name: kind for kind in faulty}}


PROBLEM = Faulty()
