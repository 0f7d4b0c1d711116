"""The time-ordered split of the labelled examples into three parts, by time:

    train   the rows a model is fitted on
    valid   the last share of the training part: where a model stops early (and nothing else)
    eval    the last share of the examples: the future the model is judged on

Validation that does not flatter the model: no part sees a later one, and a problem featurises
valid rows as it featurises eval rows, from the rows before them only.
"""

from __future__ import annotations

from typing import Annotated

import pyarrow as pa
from pydantic import Field

from cd4ml.io import UserError
from cd4ml.params import OpenFraction, Section

PARTS = ("train", "valid", "eval")


class Split(Section):
    """Stage split: the shares of the examples each part gets."""

    eval_fraction: OpenFraction  # the last share of the examples (time order): the eval part
    # the last share of the training part: the early-stopping rows
    valid_fraction: Annotated[float, Field(gt=0, lt=0.5)]


def eval_start(n_rows: int, eval_fraction: float) -> int:
    """Index of the first evaluation row: the examples are in time order, the tail is the
    future."""
    cut = n_rows - round(n_rows * eval_fraction)
    if cut < 1 or cut >= n_rows:
        raise UserError(
            f"split.eval_fraction={eval_fraction} leaves an empty part of {n_rows} example rows"
        )
    return cut


def early_stopping_start(n_rows: int, valid_fraction: float) -> int:
    """First row of the early-stopping slice of `n_rows` time-ordered training rows: the last
    `valid_fraction` of them, at least one row."""
    return n_rows - max(1, round(n_rows * valid_fraction))


def split(examples: pa.Table, truth: pa.ChunkedArray, settings: Split) -> dict[str, pa.Table]:
    """The three parts (PARTS) and the eval rows' true probability (null where unknown)."""
    cut = eval_start(examples.num_rows, settings.eval_fraction)
    start = early_stopping_start(cut, settings.valid_fraction)
    if start < 1:
        # The valid part takes at least one row: only more rows before eval leave some to fit.
        raise UserError(
            f"split.valid_fraction={settings.valid_fraction} leaves no training rows of the "
            f"{cut} before the eval part; add data or lower split.eval_fraction"
        )
    return {
        "train": examples.slice(0, start),
        "valid": examples.slice(start, cut - start),
        "eval": examples.slice(cut),
        # Kept apart from the features, so that no stage can train on it.
        "eval_truth": pa.table({"target_probability": truth.slice(cut)}),
    }
