"""cd4ml.health: an infinite feature or a probability that is none is refused in one line naming
the row and the feature; a NaN feature (the features' missing value) passes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cd4ml import health as H
from cd4ml.io import UserError


def _unhealthy(**given) -> H.Unhealthy:
    with pytest.raises(H.Unhealthy) as err:
        H.check(**given)
    assert "\n" not in str(err.value)
    return err.value


def test_nan_features_are_missing_values_and_pass():
    x = pd.DataFrame({"a": [0.5, np.nan, 2.0], "b": np.array([np.nan] * 3, dtype=np.float32)})
    H.check(x, np.array([0.0, 0.5, 1.0]))
    assert H.infinite_feature(x) is None
    H.check(x.iloc[:0], np.empty(0, dtype=np.float32))  # no rows


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_an_infinite_feature_is_refused_naming_the_first_row_then_feature(dtype):
    x = pd.DataFrame(
        {
            "count": np.arange(4, dtype=np.int16),
            "a": np.array([0.1, 0.2, 0.3, -np.inf], dtype=dtype),
            "b": np.array([0.1, np.nan, np.inf, np.inf], dtype=dtype),
        }
    )
    err = _unhealthy(x=x)
    assert (err.row, err.feature, err.value) == (2, "b", np.inf)
    assert str(err) == "rows[2]: feature b is inf (NaN is a missing value, infinity is not)"
    assert H.infinite_feature(x) == (2, "b", np.inf)
    assert H.infinite_feature(x.iloc[3:]) == (0, "a", -np.inf)  # positions, not the index


def test_text_and_category_columns_are_skipped_whole_numbers_never_infinite():
    x = pd.DataFrame(
        {
            "genre": pd.Categorical(["a", "b", None]),
            "name": ["x", "y", "z"],
            "plays": [1, 2, 3],
            "rate": [0.1, np.inf, 0.3],
        }
    )
    assert H.infinite_feature(x) == (1, "rate", np.inf)
    assert H.infinite_feature(x.drop(columns="rate")) is None
    assert H.infinite_feature(pd.DataFrame({"plays": [1, 2]})) is None


def test_a_long_frame_is_checked_in_blocks_with_rows_counted_from_its_start(monkeypatch):
    monkeypatch.setattr(H, "BLOCK_ROWS", 4)
    x = pd.DataFrame({"a": np.zeros(10), "b": np.zeros(10, dtype=np.float32)})
    assert H.infinite_feature(x) is None
    x.loc[9, "b"] = -np.inf
    assert H.infinite_feature(x) == (9, "b", -np.inf)
    x.loc[5, "a"] = np.inf
    assert H.infinite_feature(x) == (5, "a", np.inf)


@pytest.mark.parametrize(
    ("p", "row", "value"),
    [
        ([0.2, 0.4, np.nan], 2, "nan"),
        ([0.2, np.inf], 1, "inf"),
        ([-np.inf], 0, "-inf"),
        ([0.5, 1.5], 1, "1.5"),
        ([-0.01, 0.5], 0, "-0.01"),
    ],
)
def test_a_probability_that_is_none_is_refused_naming_the_row(p, row, value):
    err = _unhealthy(p=np.array(p, dtype=np.float32))
    assert (err.row, err.feature) == (row, None)
    assert str(err).startswith(f"rows[{row}]: the model's probability is {value}")
    assert str(err).endswith("not a number in [0, 1]")


def test_the_features_are_checked_before_the_probabilities():
    err = _unhealthy(x=pd.DataFrame({"a": [1.0, np.inf]}), p=np.array([np.nan, 0.5]))
    assert (err.row, err.feature) == (1, "a")
    assert isinstance(err, UserError)  # a stage's main() turns it into one line
